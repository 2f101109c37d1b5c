//go:build unix

package ncclreceiver

import (
	"os"
	"syscall"
)

// identify returns the file's device and inode: what stays the same when a file is renamed (rotated) and
// changes when a new file takes its name.
func identify(fi os.FileInfo, path string) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)} //nolint:unconvert // Dev is int32 or uint64 by platform
	}
	return pathID(path)
}
