package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	onnx "github.com/yalue/onnxruntime_go"
)

// EnvLibrary names the environment variable that points at the ONNX Runtime
// shared library. It takes precedence over the default locations.
const EnvLibrary = "PETREL_ORT_LIB"

// LibraryNames are the file names looked for in each default directory.
var LibraryNames = []string{"libonnxruntime.so.1", "libonnxruntime.so"}

// fixHint tells an operator how to get the library in place.
const fixHint = "run `make setup` (or scripts/setup.sh) or set PETREL_ORT_LIB / --ort-lib to the path of libonnxruntime.so"

// ErrLibraryNotFound is returned by FindLibrary (and Init) when no ONNX
// Runtime shared library can be found. Its message says how to fix it.
var ErrLibraryNotFound = errors.New("ONNX Runtime library not found")

// ErrNotInitialized is returned by Load and Inspect before Init succeeded.
var ErrNotInitialized = errors.New("ort: ONNX Runtime not initialised: call ort.Init first")

// ErrAlreadyInitialized is returned by Init when the process-wide runtime was
// already initialised from a different library path.
var ErrAlreadyInitialized = errors.New("ort: ONNX Runtime already initialised from another library")

// searchEnv is what library lookup reads from its surroundings; FindLibrary
// fills it from the process, tests fill it by hand.
type searchEnv struct {
	getenv   func(string) string
	cwd      string // "" to skip
	exeDir   string // "" to skip
	cacheDir string // user cache dir ($XDG_CACHE_HOME or ~/.cache); "" to skip
}

// FindLibrary resolves the path of the ONNX Runtime shared library, in this
// order:
//
//  1. explicit, when not empty (it must exist);
//  2. $PETREL_ORT_LIB, when set (it must exist);
//  3. <dir>/.cache/ort/libonnxruntime.so.1 for dir the working directory or
//     any of its ancestors (which finds the repository's cache from any
//     package directory), then the same from the executable's directory;
//  4. <exe>/../lib/ and <exe>/../lib/petrel/ (an unpacked release, the
//     edge install);
//  5. $XDG_CACHE_HOME/petrel/ort/ (or ~/.cache/petrel/ort/).
//
// When nothing is found the error wraps ErrLibraryNotFound and says how to
// fix it.
func FindLibrary(explicit string) (string, error) {
	env := searchEnv{getenv: os.Getenv}
	env.cwd, _ = os.Getwd()
	if exe, err := os.Executable(); err == nil {
		env.exeDir = filepath.Dir(exe)
	}
	env.cacheDir, _ = os.UserCacheDir()
	return findLibrary(explicit, env)
}

func findLibrary(explicit string, env searchEnv) (string, error) {
	if explicit != "" {
		if err := isFile(explicit); err != nil {
			return "", fmt.Errorf("%w: library path %q: %v; %s", ErrLibraryNotFound, explicit, err, fixHint)
		}
		return explicit, nil
	}
	if p := env.getenv(EnvLibrary); p != "" {
		if err := isFile(p); err != nil {
			return "", fmt.Errorf("%w: %s=%q: %v; %s", ErrLibraryNotFound, EnvLibrary, p, err, fixHint)
		}
		return p, nil
	}
	var dirs []string
	for _, start := range []string{env.cwd, env.exeDir} {
		if start == "" {
			continue
		}
		for d := filepath.Clean(start); ; d = filepath.Dir(d) {
			dirs = append(dirs, filepath.Join(d, ".cache", "ort"))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if env.exeDir != "" {
		// An unpacked release (bin/petrel beside lib/) and the edge
		// install (/usr/local/bin/petrel, /usr/local/lib/petrel/).
		up := filepath.Dir(filepath.Clean(env.exeDir))
		dirs = append(dirs, filepath.Join(up, "lib"), filepath.Join(up, "lib", "petrel"))
	}
	if env.cacheDir != "" {
		dirs = append(dirs, filepath.Join(env.cacheDir, "petrel", "ort"))
	}
	for _, d := range dirs {
		for _, name := range LibraryNames {
			p := filepath.Join(d, name)
			if isFile(p) == nil {
				return p, nil
			}
		}
	}
	where := "nowhere"
	if len(dirs) > 0 {
		where = strings.Join(dedupe(dirs), ", ")
	}
	return "", fmt.Errorf("%w (%s unset; looked in %s): %s", ErrLibraryNotFound, EnvLibrary, where, fixHint)
}

func isFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

func dedupe(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// runtimeState is the one ONNX Runtime environment a process can have;
// onnxruntime_go keeps it in package globals, so this does too.
var runtimeState struct {
	mu      sync.Mutex
	path    string // canonical path of the loaded library
	version string
}

// Init loads the ONNX Runtime shared library and creates the process-wide
// environment. libPath is resolved with FindLibrary, so "" means the
// default locations.
//
// Init is idempotent and safe for concurrent callers: once it has
// succeeded, later calls return the same version, and fail with
// ErrAlreadyInitialized only if they name a different library explicitly.
// The environment lives until the process exits, and logs only fatal
// errors: every other error is returned to the caller. It returns the ONNX
// Runtime version, e.g. "1.30.0".
func Init(libPath string) (version string, err error) {
	if !littleEndian() {
		return "", errors.New("ort: big-endian hosts are not supported")
	}
	runtimeState.mu.Lock()
	defer runtimeState.mu.Unlock()
	if runtimeState.version != "" {
		if libPath != "" && canonical(libPath) != runtimeState.path {
			return "", fmt.Errorf("%w: loaded %s, asked for %s", ErrAlreadyInitialized, runtimeState.path, libPath)
		}
		return runtimeState.version, nil
	}
	path, err := FindLibrary(libPath)
	if err != nil {
		return "", err
	}
	path = canonical(path)
	if !onnx.IsInitialized() {
		// Someone else in the process may have initialised onnxruntime_go
		// directly; then we share their environment.
		onnx.SetSharedLibraryPath(path)
		if err := onnx.InitializeEnvironment(onnx.WithLogLevelFatal()); err != nil {
			return "", fmt.Errorf("ort: load %s: %w (%s)", path, err, fixHint)
		}
	}
	runtimeState.path, runtimeState.version = path, onnx.GetVersion()
	return runtimeState.version, nil
}

// initialized reports whether Init has succeeded.
func initialized() bool {
	runtimeState.mu.Lock()
	defer runtimeState.mu.Unlock()
	return runtimeState.version != ""
}

func canonical(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}
