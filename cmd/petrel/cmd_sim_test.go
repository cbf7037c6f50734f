package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSimCommands runs `petrel sim` end to end on small worlds: usage
// errors exit 2 with a message, runs print their figures and write their
// CSV files and plots.
func TestSimCommands(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errOut strings.Builder
		e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		code := runSim(t.Context(), e, args)
		return code, out.String(), errOut.String()
	}
	for _, bad := range [][]string{{}, {"nope"}, {"edge", "--scenario", "nope"}, {"edge", "--policy", "bogus", "--sites", "50", "--requests", "100"},
		{"rollout", "--sites", "0"}, {"churn", "--levels", "x"}, {"churn", "--central-epochs", "-1"}, {"edge", "extra"}} {
		if code, _, msg := run(bad...); code != 2 || msg == "" {
			t.Errorf("petrel sim %q: exit %d, message %q; want 2 and a message", bad, code, msg)
		}
	}
	dir := t.TempDir()
	code, out, msg := run("edge", "--scenario", "steady", "--entry", "metro,routed", "--sites", "120", "--requests", "6000", "--out", filepath.Join(dir, "edge"))
	if code != 0 || !strings.Contains(out, "steady") || !strings.Contains(out, "routed") {
		t.Fatalf("sim edge: exit %d\n%s%s", code, out, msg)
	}
	code, out, msg = run("rollout", "--sites", "150", "--out", filepath.Join(dir, "rollout"))
	if code != 0 || !strings.Contains(out, "rolled back at") {
		t.Fatalf("sim rollout: exit %d\n%s%s", code, out, msg)
	}
	for _, f := range []string{"edge/summary.csv", "edge/steady-latency.png", "rollout/rollout_summary.csv", "rollout/rollout.png", "rollout/rollback.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
