package ort

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindLibraryPrecedence(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not really a library"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	explicit := mk("explicit/libonnxruntime.so")
	fromEnv := mk("env/libonnxruntime.so.1")
	repoLib := mk("repo/.cache/ort/libonnxruntime.so.1")
	exeLib := mk("bin/.cache/ort/libonnxruntime.so") // only the unversioned name
	cacheLib := mk("xdg/petrel/ort/libonnxruntime.so.1")
	releaseLib := mk("release/lib/libonnxruntime.so.1")
	installLib := mk("usr/local/lib/petrel/libonnxruntime.so.1")
	cwd := filepath.Join(root, "repo", "models", "ort")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	withEnv := func(k string) string {
		if k == EnvLibrary {
			return fromEnv
		}
		return ""
	}
	full := searchEnv{getenv: withEnv, cwd: cwd, exeDir: filepath.Join(root, "bin"), cacheDir: filepath.Join(root, "xdg")}

	tests := []struct {
		name     string
		explicit string
		env      searchEnv
		want     string
	}{
		{"explicit wins", explicit, full, explicit},
		{"env next", "", full, fromEnv},
		{"cwd ancestors", "", searchEnv{getenv: noEnv, cwd: cwd, exeDir: filepath.Join(root, "bin"), cacheDir: filepath.Join(root, "xdg")}, repoLib},
		{"executable dir", "", searchEnv{getenv: noEnv, cwd: root, exeDir: filepath.Join(root, "bin"), cacheDir: filepath.Join(root, "xdg")}, exeLib},
		{"unpacked release", "", searchEnv{getenv: noEnv, cwd: root, exeDir: filepath.Join(root, "release", "bin"), cacheDir: filepath.Join(root, "xdg")}, releaseLib},
		{"edge install", "", searchEnv{getenv: noEnv, cwd: root, exeDir: filepath.Join(root, "usr", "local", "bin"), cacheDir: filepath.Join(root, "xdg")}, installLib},
		{"user cache", "", searchEnv{getenv: noEnv, cwd: root, cacheDir: filepath.Join(root, "xdg")}, cacheLib},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findLibrary(tc.explicit, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFindLibraryErrorsSayHowToFix(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "nope.so")
	tests := []struct {
		name     string
		explicit string
		env      searchEnv
		mention  string
	}{
		{"explicit missing", missing, searchEnv{getenv: func(string) string { return "" }}, missing},
		{"env missing", "", searchEnv{getenv: func(string) string { return missing }, cwd: root}, EnvLibrary},
		{"explicit is a directory", root, searchEnv{getenv: func(string) string { return "" }}, "directory"},
		{"nothing anywhere", "", searchEnv{getenv: func(string) string { return "" }, cwd: root, cacheDir: filepath.Join(root, "cache")}, filepath.Join(root, ".cache", "ort")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := findLibrary(tc.explicit, tc.env)
			if !errors.Is(err, ErrLibraryNotFound) {
				t.Fatalf("err = %v, want ErrLibraryNotFound", err)
			}
			msg := err.Error()
			for _, want := range []string{"make setup", "scripts/setup.sh", "PETREL_ORT_LIB", "--ort-lib", "libonnxruntime.so", tc.mention} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestCanonicalFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(real, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "libonnxruntime.so")
	if err := os.Symlink("libonnxruntime.so.1", link); err != nil {
		t.Fatal(err)
	}
	if canonical(link) != canonical(real) {
		t.Errorf("canonical(%s) = %s, want %s", link, canonical(link), canonical(real))
	}
}
