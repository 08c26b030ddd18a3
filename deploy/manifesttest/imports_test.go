package manifesttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// Each dependency lives in one room: pgx in the PostgreSQL adapter, the
// NATS modules in the bus adapters. Every other package reaches them
// through those packages' own types, so that a change of driver or client
// is a change of one package. Only the non-test imports are held to it:
// a test file may import what it drives (a server it starts, a raw client
// it compares with), and so may the test harness.

const module = "github.com/licenseledger/ledger"

// rooms lists each dependency (an import path prefix) with the packages
// that may import it. An entry names a package and those below it; one
// that does not exist yet is allowed all the same.
var rooms = []struct {
	dep    string
	owners []string
}{
	{"github.com/jackc/pgx/", []string{"internal/postgres", "internal/pgserver"}},
	{"github.com/nats-io/", []string{"internal/natsbus", "internal/natsembed", "internal/natsbackup", "internal/natsauth",
		"gatekeeper/natsstream"}},
}

// harness is the test harness, which imports what it drives: servers for
// the tests, and the raw clients the bench measures the adapters against.
var harness = []string{"internal/testenv", "internal/faulttest", "internal/bench", "deploy"}

// goPackage is what go list -json says of a package.
type goPackage struct {
	ImportPath string
	Imports    []string
}

// within reports whether pkg (an import path) is one of dirs (paths
// relative to the module) or below one.
func within(pkg string, dirs []string) bool {
	rel, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return false
	}
	for _, d := range dirs {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

// misplacedImports lists every import of a dependency by a package outside
// its room, as "PACKAGE imports DEP (only OWNERS may)", but for the
// packages within exempt.
func misplacedImports(pkgs []goPackage, exempt []string) []string {
	var out []string
	for _, p := range pkgs {
		if within(p.ImportPath, exempt) {
			continue
		}
		for _, imp := range p.Imports {
			for _, r := range rooms {
				if strings.HasPrefix(imp, r.dep) && !within(p.ImportPath, r.owners) {
					out = append(out, p.ImportPath+" imports "+imp+" (only "+strings.Join(r.owners, ", ")+" may)")
				}
			}
		}
	}
	return out
}

// modulePackages lists every package of the module with its imports.
func modulePackages(t *testing.T) []goPackage {
	t.Helper()
	c := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	c.Dir = repoRoot(t)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []goPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p goPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go list ./...: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestDependenciesStayInTheirRooms(t *testing.T) {
	pkgs := modulePackages(t)
	if len(pkgs) < 30 {
		t.Fatalf("go list ./...: only %d packages", len(pkgs))
	}
	for _, p := range misplacedImports(pkgs, harness) {
		t.Error(p)
	}
}

func TestDependencyRoomsCheckCanFail(t *testing.T) {
	pkgs := []goPackage{
		{module + "/cmd/ledger", []string{"context", module + "/internal/postgres", "github.com/jackc/pgx/v5/pgxpool"}},
		{module + "/internal/httpapi", []string{"github.com/nats-io/nats.go", "github.com/jackc/pgxlisten"}},
		{module + "/internal/postgres", []string{"github.com/jackc/pgx/v5", "github.com/nats-io/nats.go/jetstream"}},
		{module + "/internal/postgresql", []string{"github.com/jackc/pgx/v5"}},
		{module + "/internal/natsbus", []string{"github.com/nats-io/nats.go/jetstream"}},
		{module + "/gatekeeper/natsstream", []string{"github.com/nats-io/nats.go"}},
		{module + "/internal/testenv/pgtest", []string{"github.com/jackc/pgx/v5"}},
		{module + "/internal/bench", []string{"github.com/nats-io/nats-server/v2/server"}},
		{module + "/gatekeeper/follow", []string{"github.com/jackc/pgx/v5"}},
	}
	want := []string{
		module + "/cmd/ledger imports github.com/jackc/pgx/v5/pgxpool (only internal/postgres, internal/pgserver may)",
		module + "/internal/httpapi imports github.com/nats-io/nats.go (only internal/natsbus, internal/natsembed, internal/natsbackup, internal/natsauth, gatekeeper/natsstream may)",
		module + "/internal/postgres imports github.com/nats-io/nats.go/jetstream (only internal/natsbus, internal/natsembed, internal/natsbackup, internal/natsauth, gatekeeper/natsstream may)",
		module + "/internal/postgresql imports github.com/jackc/pgx/v5 (only internal/postgres, internal/pgserver may)",
		module + "/gatekeeper/follow imports github.com/jackc/pgx/v5 (only internal/postgres, internal/pgserver may)",
	}
	if got := misplacedImports(pkgs, harness); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("misplacedImports =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
