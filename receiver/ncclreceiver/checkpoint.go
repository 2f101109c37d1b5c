package ncclreceiver

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// checkpointKey is the storage key of the offsets; one value holds every file, written once per interval.
const checkpointKey = "nccl_offsets"

// checkpointEntry is one JSON file's read position. The head fingerprint lets a restart tell the same file
// from a new one that reuses the inode.
type checkpointEntry struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	FPLen  int    `json:"fp_len"`
	FPHash uint64 `json:"fp_hash"`
}

type checkpoint struct {
	Version int               `json:"version"`
	Files   []checkpointEntry `json:"files"`
}

// snapshot returns the offsets of the JSON files being followed.
func (t *tailer) snapshot() []byte {
	cp := checkpoint{Version: 1}
	for _, f := range t.files {
		if f.prom {
			continue // a textfile is re-read whole; re-reading a gauge snapshot counts nothing twice
		}
		cp.Files = append(cp.Files, checkpointEntry{Path: f.path, Dev: f.id.dev, Ino: f.id.ino, Offset: f.offset, FPLen: f.fpLen, FPHash: f.fpHash})
	}
	sort.Slice(cp.Files, func(i, j int) bool { return cp.Files[i].Path < cp.Files[j].Path })
	b, _ := json.Marshal(cp)
	return b
}

// load takes the offsets of the last run; they apply to files found with the same identity.
func (t *tailer) load(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return fmt.Errorf("checkpoint unreadable: %w", err)
	}
	if cp.Version != 1 {
		return fmt.Errorf("checkpoint version %d unknown", cp.Version)
	}
	for _, e := range cp.Files {
		if e.Offset < 0 {
			continue
		}
		t.restore[fileID{dev: e.Dev, ino: e.Ino}] = e
	}
	// A checkpoint means this is a restart: files that appeared while the collector was down are read from
	// their beginning, whatever start_at says.
	t.first = false
	return nil
}

// getStorageClient returns the client of the named storage extension.
func getStorageClient(ctx context.Context, host component.Host, id component.ID, self component.ID) (storage.Client, error) {
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("storage: extension %q is not configured (add it under extensions and service.extensions)", id)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("storage: extension %q is not a storage extension", id)
	}
	return se.GetClient(ctx, component.KindReceiver, self, "")
}
