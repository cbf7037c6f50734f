package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testVersion = "1.2.3-rc.1+test"
	testEpoch   = 1700000000 // 2023-11-14T22:13:20Z
)

// scriptTimeout bounds one run of scripts/release.sh, against hangs only
// (a first build on a cold cache compiles every dependency).
const scriptTimeout = 10 * time.Minute

// runRelease runs scripts/release.sh of root with env added to this
// process's environment, returning its combined output.
func runRelease(ctx context.Context, root string, env ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "release.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// TestReleaseTarball builds the release twice, into two directories, and
// checks that the tarballs are byte-identical, that SHA256SUMS verifies,
// the layout, ownership, modes and times of every entry, the packaged
// files, and that the packaged binary runs and loads the packaged ONNX
// Runtime.
func TestReleaseTarball(t *testing.T) {
	root := repoRoot(t)
	transforms := deployableTransforms(t, root)
	requireReleaseInputs(t, root, transforms)

	// One build after the other: the first may compile from a cold build
	// cache, the second links from a warm one, and both must agree.
	name := "petrel-" + testVersion + "-linux-amd64"
	dists := [2]string{t.TempDir(), t.TempDir()}
	for i, d := range dists {
		out, err := runRelease(t.Context(), root,
			"DIST="+d, "VERSION="+testVersion, "SOURCE_DATE_EPOCH="+strconv.Itoa(testEpoch))
		if err != nil {
			t.Fatalf("scripts/release.sh (run %d): %v\n%s", i+1, err, out)
		}
	}

	var tarballs [2][]byte
	for i, d := range dists {
		b, err := os.ReadFile(filepath.Join(d, name+".tar.gz"))
		if err != nil {
			t.Fatalf("run %d wrote no tarball: %v", i+1, err)
		}
		tarballs[i] = b
		verifySums(t, d, map[string][]byte{name + ".tar.gz": b})
	}
	if !bytes.Equal(tarballs[0], tarballs[1]) {
		t.Fatalf("the two builds differ: sha256 %s and %s; the release is not reproducible",
			sha256Hex(tarballs[0]), sha256Hex(tarballs[1]))
	}

	files := checkTarball(t, root, tarballs[0], name, transforms)
	checkBinary(t, root, files[name+"/bin/petrel"])
	runPackaged(t, files, name)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// verifySums checks that dir/SHA256SUMS, in sha256sum's format, lists
// exactly the given files with their digests.
func verifySums(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("SHA256SUMS: %v", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		// "<64 hex> <' ' text mode | '*' binary mode><name>"
		if len(line) < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
			t.Fatalf("SHA256SUMS line %d %q: not sha256sum's format", n, line)
		}
		sum, file := line[:64], line[66:]
		if _, err := hex.DecodeString(sum); err != nil || strings.ToLower(sum) != sum {
			t.Fatalf("SHA256SUMS line %d: %q is not a lower-case hex digest", n, sum)
		}
		b, ok := want[file]
		if !ok {
			t.Errorf("SHA256SUMS lists %q, which this release did not build", file)
			continue
		}
		if seen[file] {
			t.Errorf("SHA256SUMS lists %q twice", file)
		}
		seen[file] = true
		if got := sha256Hex(b); got != sum {
			t.Errorf("SHA256SUMS: %s is %s, the file's sha256 is %s", file, sum, got)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("SHA256SUMS: %v", err)
	}
	for file := range want {
		if !seen[file] {
			t.Errorf("SHA256SUMS does not list %s", file)
		}
	}
}

// checkTarball checks every entry of the tarball and returns the contents
// of its regular files by name.
func checkTarball(t *testing.T, root string, tgz []byte, top string, transforms []string) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatalf("tarball: %v", err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header records name %q, time %v; want neither (gzip -n)", zr.Name, zr.ModTime)
	}

	wantDirs := []string{"", "bin", "lib", "share", "share/petrel", "share/petrel/wasm"}
	wantFiles := map[string]int64{ // name under top -> mode
		"bin/petrel":              0o755,
		"lib/libonnxruntime.so.1": 0o644,
		"share/petrel/VERSION":    0o644,
		"THIRD_PARTY_NOTICES.txt": 0o644,
	}
	for _, name := range transforms {
		wantFiles["share/petrel/wasm/"+name+".wasm"] = 0o644
	}
	for _, doc := range []string{"README.md", "LICENSE", "LICENSE.md", "LICENSE.txt", "NOTICE"} {
		if _, err := os.Stat(filepath.Join(root, doc)); err == nil {
			wantFiles[doc] = 0o644
		}
	}
	var want []string
	for _, d := range wantDirs {
		want = append(want, path.Join(top, d)+"/")
	}
	for f := range wantFiles {
		want = append(want, top+"/"+f)
	}
	slices.Sort(want)

	files := map[string][]byte{}
	var got []string
	tr := tar.NewReader(zr)
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("tarball: %v", err)
		}
		got = append(got, hdr.Name)
		if first && hdr.Name != top+"/" {
			t.Errorf("first entry %q, want the top directory %s/", hdr.Name, top)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 without names", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if hdr.ModTime.Unix() != testEpoch || hdr.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH %d", hdr.Name, hdr.ModTime, testEpoch)
		}
		if !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			t.Errorf("%s: records atime %v / ctime %v", hdr.Name, hdr.AccessTime, hdr.ChangeTime)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(hdr.Name, top), "/")
		switch hdr.Typeflag {
		case tar.TypeDir:
			if hdr.Mode != 0o755 {
				t.Errorf("%s: mode %#o, want 0755", hdr.Name, hdr.Mode)
			}
		case tar.TypeReg:
			if m, ok := wantFiles[rel]; ok && hdr.Mode != m {
				t.Errorf("%s: mode %#o, want %#o", hdr.Name, hdr.Mode, m)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("tarball: %s: %v", hdr.Name, err)
			}
			files[hdr.Name] = b
		default:
			t.Errorf("%s: type %q, want only directories and regular files", hdr.Name, hdr.Typeflag)
		}
	}
	sortedGot := slices.Sorted(slices.Values(got))
	if d := sameSet(sortedGot, want); d != "" {
		t.Fatalf("tarball entries: %s", d)
	}
	if !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(a, b) }) {
		t.Errorf("entries are not in name order: %q", got)
	}

	if v := string(files[top+"/share/petrel/VERSION"]); v != testVersion+"\n" {
		t.Errorf("share/petrel/VERSION = %q, want %q", v, testVersion+"\n")
	}
	// The notices cover ONNX Runtime and every module linked into petrel.
	notices := string(files[top+"/THIRD_PARTY_NOTICES.txt"])
	for _, want := range []string{"ONNX Runtime", "Copyright (c) Microsoft Corporation", "github.com/hashicorp/memberlist ",
		"github.com/quic-go/quic-go ", "github.com/tetratelabs/wazero ", "github.com/yalue/onnxruntime_go ", "github.com/nats-io/nats.go "} {
		if !strings.Contains(notices, want) {
			t.Errorf("THIRD_PARTY_NOTICES.txt lacks %q", want)
		}
	}
	if lib := files[top+"/lib/libonnxruntime.so.1"]; !bytes.HasPrefix(lib, []byte("\x7fELF")) {
		t.Error("lib/libonnxruntime.so.1 is not an ELF shared library")
	}
	same := map[string]string{"lib/libonnxruntime.so.1": ".cache/ort/libonnxruntime.so.1"}
	for _, name := range transforms {
		if w := files[top+"/share/petrel/wasm/"+name+".wasm"]; !bytes.HasPrefix(w, []byte("\x00asm")) {
			t.Errorf("share/petrel/wasm/%s.wasm is not a WebAssembly module", name)
		}
		same["share/petrel/wasm/"+name+".wasm"] = ".cache/wasm/" + name + ".wasm"
	}
	for _, doc := range []string{"README.md", "LICENSE", "LICENSE.md", "LICENSE.txt", "NOTICE"} {
		if _, ok := wantFiles[doc]; ok {
			same[doc] = doc
		}
	}
	for in, src := range same {
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatalf("read %s: %v", src, err)
		}
		if !bytes.Equal(files[top+"/"+in], b) {
			t.Errorf("%s is not a copy of %s", in, src)
		}
	}
	return files
}

// checkBinary checks how the packaged petrel was built: linux/amd64 ELF,
// cgo, -trimpath, no VCS stamp, and no trace of the checkout's path.
func checkBinary(t *testing.T, root string, bin []byte) {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("bin/petrel is not ELF: %v", err)
	}
	if ef.Machine != elf.EM_X86_64 {
		t.Errorf("bin/petrel is for %v, want x86-64", ef.Machine)
	}
	if ef.Section(".symtab") != nil || ef.Section(".debug_info") != nil {
		t.Error("bin/petrel has a symbol table or DWARF; want it stripped (-s -w)")
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("bin/petrel build info: %v", err)
	}
	if info.Path != "github.com/petrel-mesh/petrel/cmd/petrel" {
		t.Errorf("bin/petrel is %q, want github.com/petrel-mesh/petrel/cmd/petrel", info.Path)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
		if strings.HasPrefix(s.Key, "vcs") {
			t.Errorf("bin/petrel carries VCS stamp %s=%s; want -buildvcs=false", s.Key, s.Value)
		}
	}
	for k, v := range map[string]string{"-trimpath": "true", "CGO_ENABLED": "1", "GOOS": "linux", "GOARCH": "amd64"} {
		if settings[k] != v {
			t.Errorf("bin/petrel built with %s=%q, want %q", k, settings[k], v)
		}
	}
	if len(root) > 1 && bytes.Contains(bin, []byte(root+"/")) {
		t.Errorf("bin/petrel contains the checkout path %s; the build depends on where the sources are", root)
	}
}

// runPackaged extracts the packaged binary and library and runs the
// binary: version, then a command that loads ONNX Runtime through
// PETREL_ORT_LIB, then the same with PETREL_ORT_LIB wrong, which must fail
// (so the library that worked was the packaged one).
func runPackaged(t *testing.T, files map[string][]byte, top string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "petrel")
	lib := filepath.Join(dir, "lib", "libonnxruntime.so.1")
	for p, mode := range map[string]os.FileMode{bin: 0o755, lib: 0o644} {
		rel, _ := filepath.Rel(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, files[top+"/"+filepath.ToSlash(rel)], mode); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	home := t.TempDir()
	petrel := func(ortLib string, args ...string) (stdout, stderr string, err error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = work // no .cache/ort above it: the library comes from PETREL_ORT_LIB only
		cmd.Env = append(os.Environ(), "PETREL_ORT_LIB="+ortLib, "HOME="+home, "XDG_CACHE_HOME="+home)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}

	out, errOut, err := petrel(lib, "version")
	if err != nil || out != "petrel "+testVersion+"\n" {
		t.Errorf("bin/petrel version: %v, stdout %q, stderr %q; want \"petrel %s\"", err, out, errOut, testVersion)
	}
	if _, errOut, err := petrel(lib, "model", "sample", "--repo", "repo"); err != nil {
		t.Fatalf("bin/petrel model sample: %v\n%s", err, errOut)
	}
	model := filepath.Join("repo", "mlp-small", "1", "model.onnx")
	out, errOut, err = petrel(lib, "model", "inspect", "--json", model)
	if err != nil {
		t.Fatalf("bin/petrel model inspect with the packaged ONNX Runtime: %v\n%s", err, errOut)
	}
	var man struct {
		Format    string `json:"format"`
		Signature struct {
			Inputs []struct {
				Name  string  `json:"name"`
				Shape []int64 `json:"shape"`
			} `json:"inputs"`
		} `json:"signature"`
	}
	if err := json.Unmarshal([]byte(out), &man); err != nil {
		t.Fatalf("bin/petrel model inspect --json: %v\n%s", err, out)
	}
	if man.Format != "onnx" || len(man.Signature.Inputs) != 1 || man.Signature.Inputs[0].Name != "input" ||
		fmt.Sprint(man.Signature.Inputs[0].Shape) != "[-1 64]" {
		t.Errorf("bin/petrel model inspect: signature %+v, want onnx with input \"input\" [-1 64]", man)
	}

	missing := filepath.Join(dir, "lib", "missing.so")
	_, errOut, err = petrel(missing, "model", "inspect", "--json", model)
	if err == nil || !strings.Contains(errOut, "PETREL_ORT_LIB") {
		t.Errorf("bin/petrel model inspect with PETREL_ORT_LIB=%s: err %v, stderr %q; want a failure naming PETREL_ORT_LIB", missing, err, errOut)
	}
}

// TestReleaseScriptRejects runs scripts/release.sh in a scratch tree
// without what it needs, or with bad inputs, and checks it stops before
// building, with a message that says what to do.
func TestReleaseScriptRejects(t *testing.T) {
	root := repoRoot(t)
	script, err := os.ReadFile(filepath.Join(root, "scripts", "release.sh"))
	if err != nil {
		t.Fatal(err)
	}
	setup, err := os.ReadFile(filepath.Join(root, "scripts", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	facts, err := parseSetup(string(setup))
	if err != nil {
		t.Fatalf("scripts/setup.sh: %v", err)
	}
	transforms := deployableTransforms(t, root)

	type tree struct {
		ort, ortVersion string
		wasm            []string
	}
	full := tree{ort: "ELF", ortVersion: facts.ortVersion, wasm: transforms}
	good := []string{"VERSION=1.0.0", "SOURCE_DATE_EPOCH=1700000000"}
	cases := []struct {
		name string
		tree tree
		env  []string
		want string
	}{
		{"bad version", full, []string{"VERSION=1.0/evil", "SOURCE_DATE_EPOCH=1700000000"}, `VERSION="1.0/evil": want`},
		{"version with a space", full, []string{"VERSION=1 0", "SOURCE_DATE_EPOCH=1700000000"}, `VERSION="1 0": want`},
		{"bad epoch", full, []string{"VERSION=1.0.0", "SOURCE_DATE_EPOCH=yesterday"}, `SOURCE_DATE_EPOCH="yesterday": want seconds`},
		{"no runtime", tree{wasm: transforms}, good, "ONNX Runtime library missing: " + "%ROOT%/.cache/ort/libonnxruntime.so.1; run `make setup wasm-examples`"},
		{"stale runtime", tree{ort: "ELF", ortVersion: "0.0.1", wasm: transforms}, good, `is version "0.0.1", scripts/setup.sh pins ` + facts.ortVersion},
		{"no transforms", tree{ort: "ELF", ortVersion: facts.ortVersion}, good, "example transform missing: .cache/wasm/" + transforms[0] + ".wasm; run `make setup wasm-examples`"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(rel, content string, mode os.FileMode) {
				p := filepath.Join(dir, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), mode); err != nil {
					t.Fatal(err)
				}
			}
			write("scripts/release.sh", string(script), 0o755)
			write("scripts/setup.sh", string(setup), 0o755)
			for _, name := range transforms {
				write("models/wasm/examples/"+name+"/main.go", "package main\n", 0o644)
			}
			if c.tree.ort != "" {
				write(".cache/ort/libonnxruntime.so.1", c.tree.ort, 0o644)
				write(".cache/ort/VERSION", c.tree.ortVersion+"\n", 0o644)
			}
			for _, name := range c.tree.wasm {
				write(".cache/wasm/"+name+".wasm", "\x00asm", 0o644)
			}
			dist := t.TempDir()
			out, err := runRelease(t.Context(), dir, append([]string{"DIST=" + dist}, c.env...)...)
			if err == nil {
				t.Fatalf("release.sh succeeded; want a failure\n%s", out)
			}
			want := strings.ReplaceAll(c.want, "%ROOT%", dir)
			if !strings.Contains(string(out), want) {
				t.Errorf("release.sh output does not say %q:\n%s", want, out)
			}
			if ents, _ := os.ReadDir(dist); len(ents) > 0 {
				t.Errorf("release.sh left %d entries in DIST after failing", len(ents))
			}
		})
	}
}
