package manifesttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// --- a small Dockerfile reader ---------------------------------------------------

type dfInstruction struct {
	Cmd  string // upper case
	Args string
	Line int
}

type dfStage struct {
	Image string // after ARG substitution
	Name  string
	Body  []dfInstruction
}

type dockerfile struct {
	GlobalArgs map[string]string // ARGs before the first FROM, with defaults
	Stages     []dfStage
}

var argRefRe = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func parseDockerfile(src string) (*dockerfile, error) {
	df := &dockerfile{GlobalArgs: map[string]string{}}
	var cur strings.Builder
	start := 0
	lines := strings.Split(src, "\n")
	var instrs []dfInstruction
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		instrs = append(instrs, dfInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
	}
	if cur.Len() > 0 {
		return nil, errors.New("Dockerfile ends inside a continued line")
	}
	for _, in := range instrs {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", in.Line)
			}
			st := dfStage{Image: argRefRe.ReplaceAllStringFunc(f[0], func(ref string) string {
				return df.GlobalArgs[argRefRe.FindStringSubmatch(ref)[1]]
			})}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			df.Stages = append(df.Stages, st)
			continue
		}
		if len(df.Stages) == 0 {
			if in.Cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
			}
			name, def, _ := strings.Cut(in.Args, "=")
			df.GlobalArgs[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(def), `"`)
			continue
		}
		st := &df.Stages[len(df.Stages)-1]
		st.Body = append(st.Body, in)
	}
	if len(df.Stages) == 0 {
		return nil, errors.New("Dockerfile has no FROM")
	}
	return df, nil
}

func (df *dockerfile) final() dfStage { return df.Stages[len(df.Stages)-1] }

// finalBinaries are the absolute paths of the files the final stage copies
// from another stage into a directory.
func (df *dockerfile) finalBinaries() []string {
	var out []string
	for _, in := range df.final().Body {
		if in.Cmd != "COPY" || !strings.Contains(in.Args, "--from=") {
			continue
		}
		var srcs []string
		for _, f := range strings.Fields(in.Args) {
			if !strings.HasPrefix(f, "--") {
				srcs = append(srcs, f)
			}
		}
		if len(srcs) < 2 {
			continue
		}
		dst := srcs[len(srcs)-1]
		for _, s := range srcs[:len(srcs)-1] {
			switch {
			case strings.HasSuffix(dst, "/"):
				out = append(out, dst+path.Base(s))
			case len(srcs) == 2:
				out = append(out, dst)
			}
		}
	}
	return out
}

// goVersion is the go directive of go.mod: major.minor, or
// major.minor.patch.
func goVersion(t testing.TB) string {
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// olderGo reports whether the Go release named by the image tag (1.27,
// 1.27.3, 1.27.3-bookworm…) is known to be older than goVer, go.mod's go
// line. A tag without a patch (1.27) floats to the newest patch release.
func olderGo(tag, goVer string) bool {
	tag, _, _ = strings.Cut(tag, "-")
	a, b := strings.Split(tag, "."), strings.Split(goVer, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x < y
		}
	}
	return false
}

// runtimeUID is the user every manifest runs as.
const runtimeUID = 65532

func checkDockerfile(df *dockerfile, goVer string) []string {
	var p []string
	if len(df.Stages) < 2 {
		return []string{fmt.Sprintf("%d stage(s): want a multi-stage build (a Go builder and a minimal runtime)", len(df.Stages))}
	}
	builder := df.Stages[0]
	switch {
	case !strings.HasPrefix(builder.Image, "golang:"):
		p = append(p, fmt.Sprintf("the first stage builds from %q, want golang:%s", builder.Image, goVer))
	case strings.Contains(builder.Image, "@"):
		p = append(p, fmt.Sprintf("the builder %q is pinned by digest; use a version tag", builder.Image))
	default:
		tag := strings.TrimPrefix(builder.Image, "golang:")
		minor := strings.Join(strings.SplitN(goVer, ".", 3)[:2], ".")
		if tag != minor && !strings.HasPrefix(tag, minor+".") && !strings.HasPrefix(tag, minor+"-") || olderGo(tag, goVer) {
			p = append(p, fmt.Sprintf("the builder is golang:%s, go.mod wants go %s", tag, goVer))
		}
	}
	var build string
	for _, st := range df.Stages[:len(df.Stages)-1] {
		for _, in := range st.Body {
			if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
				build = in.Args
			}
		}
	}
	if build == "" {
		p = append(p, "no RUN … go build in a build stage")
	} else {
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags", "-s -w", "-X main.version="} {
			if !strings.Contains(build, want) {
				p = append(p, fmt.Sprintf("the go build lacks %s", want))
			}
		}
		if !strings.Contains(build, "./cmd/...") {
			for _, cmd := range []string{"./cmd/ledger", "./cmd/gatekeeper", "./cmd/licensegen"} {
				if !regexp.MustCompile(regexp.QuoteMeta(cmd) + `(\s|$)`).MatchString(build) {
					p = append(p, fmt.Sprintf("the go build does not build %s", cmd))
				}
			}
		}
	}
	final := df.final()
	distroless := regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:[a-z0-9.-]+$`).MatchString(final.Image)
	if !distroless && final.Image != "scratch" {
		p = append(p, fmt.Sprintf("the final stage is %q, want gcr.io/distroless/static-…:nonroot or scratch", final.Image))
	}
	user, entry := "", ""
	caCerts := false
	for _, in := range final.Body {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entry = in.Args
		case "RUN":
			p = append(p, fmt.Sprintf("line %d: RUN in the final stage (it has no shell)", in.Line))
		case "COPY":
			if strings.Contains(in.Args, "ca-certificates") {
				caCerts = true
			}
		}
	}
	if final.Image == "scratch" && !caCerts {
		p = append(p, "a scratch image needs the CA certificates copied in (TLS to NATS and PostgreSQL)")
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		p = append(p, fmt.Sprintf("the final stage's USER is %q: want a numeric non-root user (runAsNonRoot can only verify numbers)", user))
	} else if n != runtimeUID {
		p = append(p, fmt.Sprintf("USER %d, but the manifests run as %d", n, runtimeUID))
	}
	binaries := df.finalBinaries()
	for _, b := range []string{"/ledger", "/gatekeeper", "/licensegen"} {
		found := false
		for _, have := range binaries {
			found = found || have == b
		}
		if !found {
			p = append(p, fmt.Sprintf("the final stage does not hold %s (it has %v)", b, binaries))
		}
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) == 0 {
		p = append(p, fmt.Sprintf("ENTRYPOINT %q: want the exec form [\"/ledger\"]", entry))
	} else if argv[0] != "/ledger" {
		p = append(p, fmt.Sprintf("ENTRYPOINT runs %s, want /ledger", argv[0]))
	}
	return p
}

func TestDockerfile(t *testing.T) {
	df, err := parseDockerfile(string(readRepoFile(t, "Dockerfile")))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range checkDockerfile(df, goVersion(t)) {
		t.Error(s)
	}
	t.Logf("stages: %d; final %s; binaries %v", len(df.Stages), df.final().Image, df.finalBinaries())
}

func TestOlderGo(t *testing.T) {
	for _, c := range []struct {
		tag, goVer string
		older      bool
	}{
		{"1.27", "1.27.3", false}, {"1.27.3", "1.27.3", false}, {"1.27.4-bookworm", "1.27.3", false},
		{"1.27.2", "1.27.3", true}, {"1.27.2-alpine", "1.27.3", true}, {"1.26", "1.27", true}, {"1.26.9", "1.27.3", true},
	} {
		if got := olderGo(c.tag, c.goVer); got != c.older {
			t.Errorf("olderGo(%q, %q) = %v", c.tag, c.goVer, got)
		}
	}
}

func TestDockerfileChecksCanFail(t *testing.T) {
	orig := string(readRepoFile(t, "Dockerfile"))
	cases := []struct{ old, new, want string }{
		{"CGO_ENABLED=0", "CGO_ENABLED=1", "lacks CGO_ENABLED=0"},
		{"USER 65532:65532", "USER 0", "numeric non-root"},
		{"USER 65532:65532", "USER nonroot", "numeric non-root"},
		{"FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12", "want gcr.io/distroless"},
		{" ./cmd/licensegen", "", "does not build ./cmd/licensegen"},
		{"/out/licensegen /", "/", "does not hold /licensegen"},
		{`ENTRYPOINT ["/ledger"]`, "ENTRYPOINT /ledger", "exec form"},
		{"ARG GO_VERSION=1.27.3", "ARG GO_VERSION=1.22", "go.mod wants go"},
		{"ARG GO_VERSION=1.27.3", "ARG GO_VERSION=1.27.2", "go.mod wants go"},
		{"ARG GO_VERSION=1.27.3", "ARG GO_VERSION=1.28", "go.mod wants go"},
		{`COPY --from=build --chown=65532:65532 /out/data /data`, "RUN mkdir /data", "RUN in the final stage"},
		{"-trimpath ", "", "lacks -trimpath"},
	}
	for _, c := range cases {
		if !strings.Contains(orig, c.old) {
			t.Errorf("the Dockerfile no longer contains %q: update this case", c.old)
			continue
		}
		df, err := parseDockerfile(strings.Replace(orig, c.old, c.new, 1))
		if err != nil {
			t.Errorf("%q → %q: %v", c.old, c.new, err)
			continue
		}
		got := strings.Join(checkDockerfile(df, goVersion(t)), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want a problem mentioning %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}
	// A single stage is refused outright.
	df, err := parseDockerfile("FROM golang:1.26\nRUN go build ./cmd/...\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := checkDockerfile(df, "1.26"); len(got) == 0 || !strings.Contains(got[0], "multi-stage") {
		t.Errorf("a single-stage Dockerfile passes: %v", got)
	}
}

// --- .dockerignore ----------------------------------------------------------------

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
	text   string
}

// parseDockerignore follows Docker's rules: paths relative to the context
// root, '*' and '?' within one path element, '**' across elements, '!'
// re-includes, the last matching line wins, and a match on a directory
// covers what is inside.
func parseDockerignore(src string) []ignorePattern {
	var out []ignorePattern
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		pat := filepath.ToSlash(filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/")))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pat); i++ {
			switch {
			case strings.HasPrefix(pat[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pat[i:], "**"):
				re.WriteString(".*")
				i++
			case pat[i] == '*':
				re.WriteString("[^/]*")
			case pat[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
			}
		}
		re.WriteString("$")
		out = append(out, ignorePattern{re: regexp.MustCompile(re.String()), negate: neg, text: line})
	}
	return out
}

// ignored reports whether file (slash-separated, relative) is left out of
// the build context, and by which line.
func ignored(pats []ignorePattern, file string) (bool, string) {
	excluded, by := false, ""
	for _, pt := range pats {
		matched := false
		for p := file; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			if pt.re.MatchString(p) {
				matched = true
				break
			}
		}
		if matched {
			excluded, by = !pt.negate, pt.text
		}
	}
	return excluded, by
}

// buildInputs are the files `go build` reads for the three binaries: every
// Go and embedded file of this module's packages they depend on.
func buildInputs(t testing.TB) []string {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,ImportPath,GoFiles,EmbedFiles,Module", "./cmd/ledger", "./cmd/gatekeeper", "./cmd/licensegen")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	files := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir        string
			GoFiles    []string
			EmbedFiles []string
			Module     *struct{ Path string }
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if pkg.Module == nil || pkg.Module.Path != "github.com/licenseledger/ledger" {
			continue
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(pkg.GoFiles, pkg.EmbedFiles...) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	return files
}

func checkDockerignore(pats []ignorePattern, inputs []string) []string {
	var p []string
	for _, f := range inputs {
		if ex, by := ignored(pats, f); ex {
			p = append(p, fmt.Sprintf("%s is needed by go build but excluded by %q", f, by))
		}
	}
	// Local state, binaries and secrets never reach the build context.
	for _, f := range []string{".git/config", "ledger", "licensegen", "bin/gatekeeper", "bin/ledger", "data/nats/ledger.nk",
		"data/admin.token", "data/tokens", "keys/vendor-2026.key", "some/dir/reader.nk", "cmd/ledger/ledger.test"} {
		if ex, _ := ignored(pats, f); !ex {
			p = append(p, fmt.Sprintf("%s would be sent to the Docker daemon; exclude it", f))
		}
	}
	return p
}

func TestDockerignore(t *testing.T) {
	pats := parseDockerignore(string(readRepoFile(t, ".dockerignore")))
	inputs := buildInputs(t)
	if len(inputs) < 20 {
		t.Fatalf("go list found only %d build inputs", len(inputs))
	}
	for _, s := range checkDockerignore(pats, inputs) {
		t.Error(s)
	}
	t.Logf("%d build inputs kept in the context", len(inputs))
}

func TestDockerignoreChecksCanFail(t *testing.T) {
	inputs := []string{"go.mod", "go.sum", "cmd/ledger/main.go", "migrations/00001_read_model.sql", "internal/auth/file.go", "gatekeeper/gate.go"}
	orig := string(readRepoFile(t, ".dockerignore"))
	cases := []struct{ add, want string }{
		{"migrations", "migrations/00001_read_model.sql is needed"},
		{"**/*.sql", "migrations/00001_read_model.sql is needed"},
		{"cmd/*", "cmd/ledger/main.go is needed"},
		{"go.*", "go.mod is needed"},
		{"gatekeeper", "gatekeeper/gate.go is needed"},
	}
	for _, c := range cases {
		got := strings.Join(checkDockerignore(parseDockerignore(orig+"\n"+c.add+"\n"), inputs), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("adding %q: want %q, got:\n%s", c.add, c.want, got)
		}
	}
	got := strings.Join(checkDockerignore(parseDockerignore(strings.ReplaceAll(orig, "\n.git\n", "\n")), inputs), "\n")
	if !strings.Contains(got, ".git/config would be sent") {
		t.Errorf("without .git: got %s", got)
	}
	// Negation re-includes.
	if ex, _ := ignored(parseDockerignore("docs\n!docs/keep.md\n"), "docs/keep.md"); ex {
		t.Error("!docs/keep.md does not re-include")
	}
	if ex, _ := ignored(parseDockerignore("ledger\n"), "cmd/ledger/main.go"); ex {
		t.Error("a root pattern matches below the root")
	}
}
