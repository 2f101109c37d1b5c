package nvmlreceiver

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// replica is who owns a GPU process.
type replica struct{ instance, engine string }

// attributor maps PIDs to replicas through /proc: the command line, the cgroup path and the TCP ports the
// process listens on. NVML reports host PIDs, so in a container proc_root must be the host's /proc.
type attributor struct {
	root  string
	rules []ReplicaRule
}

// newAttributor compiles the rules' patterns itself, so attribution does not depend on Validate having run.
func newAttributor(root string, rules []ReplicaRule) *attributor {
	compiled := make([]ReplicaRule, 0, len(rules))
	for _, r := range rules {
		if r.ProcessName != "" && r.nameRE == nil {
			re, err := regexp.Compile(r.ProcessName)
			if err != nil {
				continue // Validate reports it; an uncompilable rule matches nothing rather than everything
			}
			r.nameRE = re
		}
		compiled = append(compiled, r)
	}
	return &attributor{root: root, rules: compiled}
}

func (a *attributor) resolve(pid uint32) (replica, bool) {
	if len(a.rules) == 0 {
		return replica{}, false
	}
	dir := filepath.Join(a.root, strconv.FormatUint(uint64(pid), 10))
	var cmdline, cgroup *string
	var ports map[int]bool
	for _, r := range a.rules {
		if r.nameRE != nil {
			if cmdline == nil {
				c := readCmdline(dir)
				cmdline = &c
			}
			if !r.nameRE.MatchString(*cmdline) {
				continue
			}
		}
		if r.CgroupContains != "" {
			if cgroup == nil {
				b, _ := os.ReadFile(filepath.Join(dir, "cgroup"))
				c := string(b)
				cgroup = &c
			}
			if !strings.Contains(*cgroup, r.CgroupContains) {
				continue
			}
		}
		if r.Port != 0 {
			if ports == nil {
				ports = listeningPorts(dir)
			}
			if !ports[r.Port] {
				continue
			}
		}
		return replica{instance: r.ServiceInstanceID, engine: r.Engine}, true
	}
	return replica{}, false
}

func readCmdline(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(b) == 0 {
		b, _ = os.ReadFile(filepath.Join(dir, "comm"))
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// listeningPorts returns the TCP ports on which the process holds a listening socket: its socket inodes
// (from fd/) joined with the LISTEN rows of its network namespace's tcp tables.
func listeningPorts(dir string) map[int]bool {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	ports := map[int]bool{}
	if len(inodes) == 0 {
		return ports
	}
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(dir, "net", table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			if i := strings.LastIndexByte(fields[1], ':'); i >= 0 {
				if port, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil {
					ports[int(port)] = true
				}
			}
		}
		_ = f.Close()
	}
	return ports
}
