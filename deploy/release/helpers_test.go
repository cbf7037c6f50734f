package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// setupHint is what a test says when the inputs of a release are missing.
const setupHint = "run `make setup wasm-examples` first (make test runs setup, not wasm-examples)"

// repoRoot is the repository root: the nearest ancestor of the working
// directory (the package directory under go test) holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory: not inside the repository")
		}
		dir = parent
	}
}

// setupFacts is what scripts/setup.sh pins about ONNX Runtime.
type setupFacts struct {
	ortVersion string // ORT_VERSION, e.g. "1.30.0"
	ortMember  string // the library's path inside the npm tarball
}

var (
	reORTVersion = regexp.MustCompile(`(?m)^ORT_VERSION=([0-9][0-9A-Za-z.+-]*)\s*$`)
	reORTMember  = regexp.MustCompile(`tar -xzf \S+ -C \S+ (package/\S*/libonnxruntime\.so\.1)`)
)

// parseSetup reads the ONNX Runtime facts from the text of scripts/setup.sh.
func parseSetup(text string) (setupFacts, error) {
	var f setupFacts
	m := reORTVersion.FindStringSubmatch(text)
	if m == nil {
		return f, errors.New("no ORT_VERSION=... line")
	}
	f.ortVersion = m[1]
	m = reORTMember.FindStringSubmatch(text)
	if m == nil {
		return f, errors.New("no `tar -xzf ... package/.../libonnxruntime.so.1` extraction")
	}
	f.ortMember = m[1]
	return f, nil
}

func readSetup(t *testing.T, root string) setupFacts {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "scripts", "setup.sh"))
	if err != nil {
		t.Fatalf("read scripts/setup.sh: %v", err)
	}
	f, err := parseSetup(string(b))
	if err != nil {
		t.Fatalf("scripts/setup.sh: %v", err)
	}
	return f
}

// goMinor is the language version of go.mod ("go 1.26.8" -> "1.26").
func goMinor(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	m := regexp.MustCompile(`(?m)^go ([0-9]+)\.([0-9]+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1] + "." + m[2]
}

// hostileMarker is how an example transform that exists only for the
// sandbox tests says so in its sources.
const hostileMarker = "never deploy"

// deployableTransforms lists, sorted, the example transforms under
// models/wasm/examples that are meant to be deployed: those whose Go
// sources do not carry hostileMarker.
func deployableTransforms(t *testing.T, root string) []string {
	t.Helper()
	dir := filepath.Join(root, "models", "wasm", "examples")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("list example transforms: %v", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		srcs, err := filepath.Glob(filepath.Join(dir, e.Name(), "*.go"))
		if err != nil || len(srcs) == 0 {
			t.Fatalf("example transform %s: no Go sources (%v)", e.Name(), err)
		}
		hostile := false
		for _, s := range srcs {
			if strings.HasSuffix(s, "_test.go") {
				continue
			}
			b, err := os.ReadFile(s)
			if err != nil {
				t.Fatalf("read %s: %v", s, err)
			}
			hostile = hostile || strings.Contains(string(b), hostileMarker)
		}
		if !hostile {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatalf("no deployable example transform under %s", dir)
	}
	slices.Sort(out)
	return out
}

// requireReleaseInputs fails the test, saying how to fix it, when what
// scripts/release.sh packages from .cache is missing.
func requireReleaseInputs(t *testing.T, root string, transforms []string) {
	t.Helper()
	need := []string{filepath.Join(".cache", "ort", "libonnxruntime.so.1")}
	for _, name := range transforms {
		need = append(need, filepath.Join(".cache", "wasm", name+".wasm"))
	}
	var missing []string
	for _, p := range need {
		if fi, err := os.Stat(filepath.Join(root, p)); err != nil || fi.Size() == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("release inputs missing: %s; %s", strings.Join(missing, ", "), setupHint)
	}
}

// sameSet reports how two sorted string lists differ ("" when equal).
func sameSet(got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("got %q, want %q", got, want)
}
