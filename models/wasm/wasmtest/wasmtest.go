// Package wasmtest builds the example transforms of models/wasm/examples
// for tests: BuildExample(t, "features") returns the module's bytes. It
// needs the go command and the module's source tree; modules are built
// once per test process (the go build cache makes rebuilds cheap).
package wasmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ExamplesPackage is the import path of the directory holding the examples.
const ExamplesPackage = "github.com/petrel-mesh/petrel/models/wasm/examples"

// Examples are the example transforms, each a directory under
// ExamplesPackage: the two real ones, then the hostile guests for tests.
var Examples = []string{"features", "topk", "loop", "membomb", "trap", "hugeout", "badimport", "badversion", "sandbox"}

var (
	mu    sync.Mutex
	built = map[string][]byte{}
	fails = map[string]error{}
)

// BuildExample returns the wasm bytes of example name, building it on the
// first request; it fails the test if the build fails.
func BuildExample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := Example(name)
	if err != nil {
		t.Fatalf("build wasm example %q: %v", name, err)
	}
	return b
}

// Example is BuildExample without a testing.TB (for TestMain and benchmarks
// setup).
func Example(name string) ([]byte, error) {
	mu.Lock()
	defer mu.Unlock()
	if b, ok := built[name]; ok {
		return b, nil
	}
	if err, ok := fails[name]; ok {
		return nil, err
	}
	b, err := build(name)
	if err != nil {
		fails[name] = err
		return nil, err
	}
	built[name] = b
	return b, nil
}

// Build compiles the example transform name (a directory under
// ExamplesPackage) into out as a WASI reactor.
func Build(name, out string) error {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return fmt.Errorf("bad example name %q", name)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the go command is not on PATH; it is needed to build the wasm examples")
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-buildmode=c-shared", "-o", out, ExamplesPackage+"/"+name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func build(name string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "petrel-wasm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, name+".wasm")
	if err := Build(name, out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}
