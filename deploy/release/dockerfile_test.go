package release

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Dockerfile is checked statically: no Docker engine is available to
// the tests. The parser below understands the subset of the Dockerfile
// language that deploy/docker/Dockerfile uses (comments, parser
// directives, line continuations, FROM/ARG/ENV/COPY/RUN/WORKDIR/USER/
// EXPOSE/ENTRYPOINT/CMD) and rejects anything else, so that a construct it
// does not understand cannot slip past the checks.

// instruction is one Dockerfile instruction after joining continuations.
type instruction struct {
	line  int               // first line
	cmd   string            // upper case: FROM, COPY, ...
	flags map[string]string // leading --name=value flags
	args  string            // the rest, trimmed
}

// stage is one FROM and the instructions after it.
type stage struct {
	index int
	image string // with global ARGs substituted
	name  string // the AS name, "" if none
	ins   []instruction
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	globalArgs map[string]string // ARGs before the first FROM, with defaults
	stages     []*stage
}

var knownInstructions = map[string]bool{
	"FROM": true, "ARG": true, "ENV": true, "COPY": true, "RUN": true, "WORKDIR": true,
	"USER": true, "EXPOSE": true, "ENTRYPOINT": true, "CMD": true, "LABEL": true,
}

// parseDockerfile parses text; errors name the line.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{globalArgs: map[string]string{}}
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		first := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Join continuations; comment lines inside are dropped, as Docker does.
		for strings.HasSuffix(line, `\`) {
			line = strings.TrimSuffix(line, `\`)
			i++
			for i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "#") {
				i++
			}
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: continuation at end of file", first)
			}
			line += " " + strings.TrimSpace(lines[i])
		}
		word, rest, _ := strings.Cut(line, " ")
		in := instruction{line: first, cmd: strings.ToUpper(word), flags: map[string]string{}}
		if !knownInstructions[in.cmd] {
			return nil, fmt.Errorf("line %d: instruction %q not understood by this check", first, word)
		}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var flag string
			flag, rest, _ = strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			if _, dup := in.flags[k]; dup && k != "mount" {
				return nil, fmt.Errorf("line %d: flag --%s twice", first, k)
			}
			in.flags[k] = v
			rest = strings.TrimSpace(rest)
		}
		in.args = rest
		if in.args == "" {
			return nil, fmt.Errorf("line %d: %s without arguments", first, in.cmd)
		}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := &stage{index: len(df.stages), image: expandArgs(f[0], df.globalArgs)}
			switch {
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.name = f[2]
			case len(f) != 1:
				return nil, fmt.Errorf("line %d: FROM %q: want IMAGE [AS NAME]", first, in.args)
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0:
			if in.cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", first, in.cmd)
			}
			k, v, _ := strings.Cut(in.args, "=")
			df.globalArgs[k] = unquote(v)
		default:
			st := df.stages[len(df.stages)-1]
			st.ins = append(st.ins, in)
		}
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return df, nil
}

var reArgRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expandArgs substitutes ${NAME} and $NAME from args (unknown names stay).
func expandArgs(s string, args map[string]string) string {
	return reArgRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := reArgRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if v, ok := args[name]; ok {
			return v
		}
		return ref
	})
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// stageByName finds the stage named (or numbered) ref among the stages
// before index before.
func (df *dockerfile) stageByName(ref string, before int) *stage {
	for _, st := range df.stages[:before] {
		if st.name == ref || strconv.Itoa(st.index) == ref {
			return st
		}
	}
	return nil
}

// args is the stage's ARGs: name -> default ("" if none).
func (st *stage) args() map[string]string {
	out := map[string]string{}
	for _, in := range st.ins {
		if in.cmd == "ARG" {
			k, v, _ := strings.Cut(in.args, "=")
			out[k] = unquote(v)
		}
	}
	return out
}

// env is the stage's ENV settings (KEY=VALUE form).
func (st *stage) env() (map[string]string, error) {
	out := map[string]string{}
	for _, in := range st.ins {
		if in.cmd != "ENV" {
			continue
		}
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: ENV %q: want KEY=VALUE", in.line, in.args)
			}
			out[k] = unquote(v)
		}
	}
	return out, nil
}

// output is a path a RUN instruction writes, with the shell command that
// writes it.
type output struct {
	path    string
	command string
}

// runOutputs lists what the stage's RUN instructions write: the argument
// of -o, the destination of install, the target of >. A path with a shell
// variable in it stands for its directory ("/out/wasm/$e.wasm" ->
// "/out/wasm/").
func (st *stage) runOutputs() []output {
	var outs []output
	for _, in := range st.ins {
		if in.cmd != "RUN" {
			continue
		}
		for _, command := range splitShell(in.args) {
			f := strings.Fields(command)
			add := func(p string) {
				p = unquote(p)
				if i := strings.Index(p, "$"); i >= 0 {
					p = p[:strings.LastIndex(p[:i], "/")+1]
				}
				if p != "" {
					outs = append(outs, output{p, command})
				}
			}
			for i, w := range f {
				switch {
				case w == "-o" && i+1 < len(f):
					add(f[i+1])
				case w == ">" && i+1 < len(f):
					add(f[i+1])
				case strings.HasPrefix(w, ">") && len(w) > 1 && w[1] != '&' && w[1] != '>':
					add(w[1:])
				}
			}
			if len(f) > 1 && f[0] == "install" {
				add(f[len(f)-1])
			}
		}
	}
	return outs
}

// splitShell splits a shell command line into simple commands at ;, &&, ||
// and the loop keywords do/done (good enough for the RUN lines here).
func splitShell(s string) []string {
	s = strings.NewReplacer("&&", ";", "||", ";", " do ", "; ", " done", "; ").Replace(s)
	var out []string
	for _, c := range strings.Split(s, ";") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// copyInstr is a COPY: sources and destination.
type copyInstr struct {
	line int
	from string // --from, "" for the build context
	srcs []string
	dst  string
}

func (st *stage) copies() ([]copyInstr, error) {
	var out []copyInstr
	for _, in := range st.ins {
		if in.cmd != "COPY" {
			continue
		}
		if strings.HasPrefix(in.args, "[") {
			return nil, fmt.Errorf("line %d: COPY in JSON form not understood by this check", in.line)
		}
		f := strings.Fields(in.args)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: COPY %q: want SRC... DEST", in.line, in.args)
		}
		out = append(out, copyInstr{line: in.line, from: in.flags["from"], srcs: f[:len(f)-1], dst: f[len(f)-1]})
	}
	return out, nil
}

// target is where src lands when copied to dst.
func target(src, dst string) string {
	if strings.HasSuffix(dst, "/") {
		if strings.HasSuffix(src, "/") {
			return dst
		}
		return dst + path.Base(src)
	}
	return dst
}

// last returns the stage's last instruction cmd.
func (st *stage) last(cmd string) (instruction, bool) {
	for i := len(st.ins) - 1; i >= 0; i-- {
		if st.ins[i].cmd == cmd {
			return st.ins[i], true
		}
	}
	return instruction{}, false
}

// dockerFacts is what the Dockerfile must agree with.
type dockerFacts struct {
	setup      setupFacts
	goMinor    string   // "1.26"
	transforms []string // deployable example transforms, sorted
}

const (
	wantRuntimeImage = "gcr.io/distroless/cc-debian12:nonroot"
	binaryPath       = "/usr/local/bin/petrel"
	libraryPath      = "/usr/local/lib/petrel/libonnxruntime.so.1"
)

// checkDockerfile returns every way df departs from the image's contract.
func checkDockerfile(df *dockerfile, facts dockerFacts) []string {
	var bad []string
	badf := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }

	if len(df.stages) != 2 {
		badf("%d stages, want 2 (build, runtime)", len(df.stages))
		return bad
	}
	build, runtime := df.stages[0], df.stages[1]
	if build.name != "build" {
		badf("first stage is named %q, want \"build\"", build.name)
	}
	if want := "golang:" + facts.goMinor + "-bookworm"; build.image != want {
		badf("build stage FROM %q, want %q (go.mod's Go, Debian 12 like the runtime's glibc)", build.image, want)
	}
	if runtime.image != wantRuntimeImage {
		badf("runtime stage FROM %q, want %q", runtime.image, wantRuntimeImage)
	}

	// ONNX Runtime: the version scripts/setup.sh pins, from the npm registry,
	// checked, the same member of the package.
	if v := df.globalArgs["ORT_VERSION"]; v != facts.setup.ortVersion {
		badf("ARG ORT_VERSION=%q, scripts/setup.sh pins ORT_VERSION=%s", v, facts.setup.ortVersion)
	}
	bargs := build.args()
	for _, a := range []string{"ORT_VERSION", "ORT_SHA512"} {
		if _, ok := bargs[a]; !ok {
			badf("ARG %s is not declared in the build stage (a global ARG is empty there without it)", a)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{128}$`).MatchString(df.globalArgs["ORT_SHA512"]) {
		badf("ARG ORT_SHA512=%q: want the tarball's sha512 in lower-case hex", df.globalArgs["ORT_SHA512"])
	}
	var runs strings.Builder
	for _, in := range build.ins {
		if in.cmd == "RUN" {
			runs.WriteString(in.args + "\n")
		}
	}
	for _, want := range []string{
		"https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-${ORT_VERSION}.tgz",
		`echo "${ORT_SHA512}  ort.tgz" | sha512sum -c -`,
		facts.setup.ortMember,
	} {
		if !strings.Contains(runs.String(), want) {
			badf("the build stage does not run %q", want)
		}
	}

	// Example transforms: the deployable ones, built in the build stage.
	if got := strings.Fields(bargs["WASM_TRANSFORMS"]); sameSet(slices.Sorted(slices.Values(got)), facts.transforms) != "" {
		badf("ARG WASM_TRANSFORMS=%q, want the deployable example transforms %q", bargs["WASM_TRANSFORMS"], facts.transforms)
	}

	// COPY: context sources exist (checked by the caller), --from sources
	// are outputs of an earlier stage.
	var petrelFrom, libFrom string
	for _, st := range df.stages {
		cps, err := st.copies()
		if err != nil {
			badf("%v", err)
			continue
		}
		for _, cp := range cps {
			if cp.from == "" {
				continue
			}
			src := df.stageByName(cp.from, st.index)
			if src == nil {
				badf("line %d: COPY --from=%s: no earlier stage of that name", cp.line, cp.from)
				continue
			}
			outputs := map[string]string{} // path -> the command writing it
			for _, o := range src.runOutputs() {
				outputs[o.path] = o.command
			}
			for _, s := range cp.srcs {
				command, ok := outputs[s]
				if !ok && strings.HasSuffix(s, "/") {
					for p, c := range outputs {
						if strings.HasPrefix(p, s) {
							command, ok = c, true
						}
					}
				}
				if !ok {
					badf("line %d: COPY --from=%s %s: not produced by a RUN of stage %q", cp.line, cp.from, s, cp.from)
					continue
				}
				if st != runtime {
					continue
				}
				switch target(s, cp.dst) {
				case binaryPath:
					petrelFrom = command
				case libraryPath:
					libFrom = command
				}
			}
		}
	}
	if petrelFrom == "" {
		badf("the runtime stage does not copy a built binary to %s", binaryPath)
	} else {
		for _, want := range []string{"go build", "-trimpath", "CGO_ENABLED=1", "./cmd/petrel", "-X main.Version=${VERSION}"} {
			if !strings.Contains(petrelFrom, want) {
				badf("%s is built by %q, which lacks %q", binaryPath, petrelFrom, want)
			}
		}
	}
	if libFrom == "" {
		badf("the runtime stage does not copy the ONNX Runtime library to %s", libraryPath)
	} else if !strings.Contains(libFrom, facts.setup.ortMember) {
		badf("%s comes from %q, not the package's %s", libraryPath, libFrom, facts.setup.ortMember)
	}

	// The runtime's environment, user and entrypoint.
	env, err := runtime.env()
	if err != nil {
		badf("%v", err)
	}
	if got := env["PETREL_ORT_LIB"]; got != libraryPath {
		badf("runtime ENV PETREL_ORT_LIB=%q, want %q, where the library is copied", got, libraryPath)
	}
	if u, ok := runtime.last("USER"); !ok {
		badf("the runtime stage sets no USER: it would run as root")
	} else {
		uid, _, _ := strings.Cut(u.args, ":")
		if n, err := strconv.Atoi(uid); err != nil || n <= 0 {
			badf("runtime USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot can only verify a number)", u.args)
		}
	}
	if ep, ok := runtime.last("ENTRYPOINT"); !ok {
		badf("the runtime stage has no ENTRYPOINT")
	} else {
		var argv []string
		if err := json.Unmarshal([]byte(ep.args), &argv); err != nil {
			badf("ENTRYPOINT %s: want the exec (JSON) form: %v", ep.args, err)
		} else if !slices.Equal(argv, []string{binaryPath}) {
			badf("ENTRYPOINT %q, want [%q]", argv, binaryPath)
		}
	}
	for _, in := range runtime.ins {
		if in.cmd == "RUN" {
			badf("line %d: RUN in the distroless runtime stage (it has no shell)", in.line)
		}
	}
	return bad
}

func loadDockerfile(t *testing.T, root string) (string, dockerFacts) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatalf("read deploy/docker/Dockerfile: %v", err)
	}
	return string(b), dockerFacts{setup: readSetup(t, root), goMinor: goMinor(t, root), transforms: deployableTransforms(t, root)}
}

// TestDockerfile checks deploy/docker/Dockerfile against its contract and
// against the repository (setup.sh's runtime version, go.mod's Go, the
// deployable transforms, the files it copies from the context).
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	text, facts := loadDockerfile(t, root)
	df, err := parseDockerfile(text)
	if err != nil {
		t.Fatalf("deploy/docker/Dockerfile: %v", err)
	}
	for _, p := range checkDockerfile(df, facts) {
		t.Error(p)
	}
	ignore := readDockerignore(t, root)
	for _, st := range df.stages {
		cps, err := st.copies()
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range cps {
			if cp.from != "" {
				continue
			}
			for _, s := range cp.srcs {
				if s == "." {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(s))); err != nil {
					t.Errorf("line %d: COPY %s: not in the build context (the repository root): %v", cp.line, s, err)
				}
				if ignore.excludes(s) {
					t.Errorf("line %d: COPY %s: excluded by Dockerfile.dockerignore", cp.line, s)
				}
			}
		}
	}
}

// TestDockerfileChecksFail mutates the real Dockerfile and checks that each
// mutation is caught, so that TestDockerfile passing means something.
func TestDockerfileChecksFail(t *testing.T) {
	root := repoRoot(t)
	text, facts := loadDockerfile(t, root)
	cases := []struct {
		name, old, new, want string
	}{
		{"root user", "\nUSER 65532:65532\n", "\nUSER root\n", "numeric non-root uid"},
		{"uid 0", "\nUSER 65532:65532\n", "\nUSER 0:0\n", "numeric non-root uid"},
		{"no user", "\nUSER 65532:65532\n", "\n", "sets no USER"},
		{"other runtime version", "ARG ORT_VERSION=" + facts.setup.ortVersion + "\n", "ARG ORT_VERSION=1.0.0\n", "scripts/setup.sh pins"},
		{"version not in stage", "\nARG ORT_VERSION\n", "\n", "ARG ORT_VERSION is not declared in the build stage"},
		{"no checksum", "sha512sum -c -", "true", "sha512sum -c -"},
		{"env elsewhere", "ENV PETREL_ORT_LIB=" + libraryPath, "ENV PETREL_ORT_LIB=/usr/lib/libonnxruntime.so.1", "runtime ENV PETREL_ORT_LIB"},
		{"library not built", "COPY --from=build /out/lib/libonnxruntime.so.1 ", "COPY --from=build /out/lib/libonnxruntime.so ", "not produced by a RUN"},
		{"unknown stage", "COPY --from=build /out/bin/petrel", "COPY --from=builder /out/bin/petrel", "no earlier stage"},
		{"binary elsewhere", "COPY --from=build /out/bin/petrel /usr/local/bin/petrel", "COPY --from=build /out/bin/petrel /bin/petrel", "does not copy a built binary"},
		{"shell entrypoint", `ENTRYPOINT ["/usr/local/bin/petrel"]`, "ENTRYPOINT /usr/local/bin/petrel", "exec (JSON) form"},
		{"other base", "FROM " + wantRuntimeImage, "FROM debian:bookworm-slim", "runtime stage FROM"},
		{"other builder", "FROM golang:" + facts.goMinor + "-bookworm AS build", "FROM golang:" + facts.goMinor + "-alpine AS build", "build stage FROM"},
		{"hostile transform", `ARG WASM_TRANSFORMS="features topk"`, `ARG WASM_TRANSFORMS="features topk loop"`, "WASM_TRANSFORMS"},
		{"no trimpath", "CGO_ENABLED=1 go build -trimpath", "CGO_ENABLED=1 go build", `lacks "-trimpath"`},
		{"unknown instruction", "\nWORKDIR /src\n", "\nADD . /src\n", "not understood"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(text, c.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update this mutation", c.old)
			}
			df, err := parseDockerfile(strings.Replace(text, c.old, c.new, 1))
			var problems []string
			if err != nil {
				problems = []string{err.Error()}
			} else {
				problems = checkDockerfile(df, facts)
			}
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("mutation not caught: want a problem mentioning %q, got %q", c.want, problems)
		})
	}
}

// dockerignore is the pattern list of Dockerfile.dockerignore.
type dockerignore []string

func readDockerignore(t *testing.T, root string) dockerignore {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatalf("read deploy/docker/Dockerfile.dockerignore: %v", err)
	}
	var pats dockerignore
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf("Dockerfile.dockerignore: exceptions (%q) are not understood by this check", l)
		}
		pats = append(pats, strings.Trim(path.Clean(l), "/"))
	}
	return pats
}

// excludes reports whether the context path rel (slash-separated) is left
// out: a pattern matches it or one of its parent directories; "**/" matches
// any number of directories.
func (d dockerignore) excludes(rel string) bool {
	rel = strings.Trim(path.Clean(rel), "/")
	parts := strings.Split(rel, "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		for _, p := range d {
			if ok, _ := path.Match(p, prefix); ok {
				return true
			}
			if tail, ok := strings.CutPrefix(p, "**/"); ok {
				if ok, _ := path.Match(tail, parts[i]); ok {
					return true
				}
			}
		}
	}
	return false
}

// TestDockerignore checks that the context leaves out caches, build
// outputs and VCS data, and keeps everything the build needs.
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	ignore := readDockerignore(t, root)
	for _, p := range []string{".git", ".cache/ort/libonnxruntime.so.1", "bin/petrel", "dist/SHA256SUMS", "node.test", "models/oip/oip.test"} {
		if !ignore.excludes(p) {
			t.Errorf("%s is sent to the build context; want it excluded", p)
		}
	}
	// Every Go source, go.mod and go.sum must reach the build.
	var kept int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == ".cache" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "go.mod" || rel == "go.sum" || strings.HasSuffix(rel, ".go") {
			kept++
			if ignore.excludes(rel) {
				t.Errorf("%s is excluded from the build context; the build needs it", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kept < 3 {
		t.Fatalf("found %d build inputs under %s; want go.mod, go.sum and the sources", kept, root)
	}
}
