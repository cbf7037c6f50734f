// Package testproc helps tests that run Petrel's processes for real: it
// builds cmd/petrel, finds the nats-server that scripts/setup.sh builds,
// and collects a child process's output safely. Tests only.
package testproc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// ModuleRoot is the directory of go.mod above the test's directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the module root (no go.mod above the test directory)")
		}
		dir = parent
	}
}

// BuildPetrel builds cmd/petrel into a temporary directory and returns
// the binary's path.
func BuildPetrel(t testing.TB) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			t.Fatalf("this test builds cmd/petrel and needs the go command on PATH (or $GOROOT/bin/go): %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "petrel")
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/petrel")
	cmd.Dir = ModuleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/petrel: %v\n%s", err, out)
	}
	return bin
}

// NATSServer is the external nats-server the tests run: the path in
// PETREL_NATS_SERVER, else .cache/bin/nats-server under the module root
// (built by scripts/setup.sh). A missing one fails the test and says how
// to get it.
func NATSServer(t testing.TB) string {
	t.Helper()
	p := os.Getenv("PETREL_NATS_SERVER")
	if p == "" {
		p = filepath.Join(ModuleRoot(t), ".cache", "bin", "nats-server")
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("no nats-server executable at %s (%v): run scripts/setup.sh to build it, or set PETREL_NATS_SERVER", p, err)
	}
	return p
}

// Buffer collects a process's output; it is safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
