package netns

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// parseNetnsList extracts namespace names from `ip netns list` output,
// whose lines are "name" or "name (id: 3)". Lines whose first field is not
// a plausible namespace name are skipped; they cannot name a namespace
// this package created.
func parseNetnsList(out string) []string {
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !validNamespaceName(fields[0]) {
			continue
		}
		names = append(names, fields[0])
	}
	return names
}

// validNamespaceName reports whether s is a name `ip netns` accepts and
// this package could have produced: 1..255 bytes of letters, digits, '-',
// '_' and '.', not "." or "..".
func validNamespaceName(s string) bool {
	if s == "" || len(s) > 255 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// parsePids parses `ip netns pids` output: one decimal PID per line.
func parsePids(out string) ([]int, error) {
	var pids []int
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("netns: unexpected line %q in `ip netns pids` output", line)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// parseCapEff returns the effective capability mask from the contents of
// /proc/self/status (the hexadecimal "CapEff:" line).
func parseCapEff(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || len(v) > 16 {
			return 0, fmt.Errorf("netns: malformed CapEff line %q", line)
		}
		caps, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("netns: malformed CapEff line %q", line)
		}
		return caps, nil
	}
	return 0, fmt.Errorf("netns: no CapEff line in /proc/self/status")
}

// staleOwner parses a namespace name of the form
// "<prefix>-<pid>-<n>-<host>" and returns the pid, or false when name
// does not have that form for prefix.
func staleOwner(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 || parts[2] == "" || !allDigits(parts[1]) {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 || !allDigits(parts[0]) {
		return 0, false
	}
	return pid, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
