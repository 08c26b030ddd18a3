package manifesttest

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// What a production binary must not link: the test harness and its
// dependencies anywhere, and a NATS server in the binaries that only
// connect to one.
var (
	harnessPackages = []string{"testing", "github.com/licenseledger/ledger/internal/testenv/",
		"github.com/licenseledger/ledger/internal/faulttest", "github.com/chromedp/", "github.com/getkin/"}
	natsServer = "github.com/nats-io/nats-server/"
	forbidden  = map[string][]string{
		"./cmd/ledger":     harnessPackages,
		"./cmd/gatekeeper": append([]string{natsServer}, harnessPackages...),
		"./cmd/licensegen": append([]string{natsServer}, harnessPackages...),
	}
)

// checkLinked lists the packages of deps that cmd must not link. An entry
// ending in "/" forbids every package below it; others forbid the package
// and those below it.
func checkLinked(cmd string, deps []string) []string {
	var p []string
	for _, dep := range deps {
		for _, f := range forbidden[cmd] {
			if dep == strings.TrimSuffix(f, "/") || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				p = append(p, cmd+" links "+dep)
				break
			}
		}
	}
	return p
}

func TestBinariesLinkWhatTheyRun(t *testing.T) {
	root := repoRoot(t)
	for cmd := range forbidden {
		c := exec.Command("go", "list", "-deps", cmd)
		c.Dir = root
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", cmd, err, stderr.String())
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("go list -deps %s: only %d packages", cmd, len(deps))
		}
		for _, p := range checkLinked(cmd, deps) {
			t.Error(p)
		}
	}
}

func TestBinariesLinkedChecksCanFail(t *testing.T) {
	deps := []string{"fmt", "testing", "testing/iotest", "github.com/licenseledger/ledger/internal/testenv/pgtest",
		"github.com/licenseledger/ledger/internal/faulttest", "github.com/chromedp/chromedp",
		"github.com/getkin/kin-openapi/openapi3filter", "github.com/nats-io/nats-server/v2/server", "github.com/nats-io/nats.go",
		"github.com/licenseledger/ledger/internal/testenvelope"}
	want := map[string][]string{
		"./cmd/ledger": {"./cmd/ledger links testing", "./cmd/ledger links testing/iotest",
			"./cmd/ledger links github.com/licenseledger/ledger/internal/testenv/pgtest",
			"./cmd/ledger links github.com/licenseledger/ledger/internal/faulttest",
			"./cmd/ledger links github.com/chromedp/chromedp",
			"./cmd/ledger links github.com/getkin/kin-openapi/openapi3filter"},
		"./cmd/gatekeeper": {"./cmd/gatekeeper links testing", "./cmd/gatekeeper links testing/iotest",
			"./cmd/gatekeeper links github.com/licenseledger/ledger/internal/testenv/pgtest",
			"./cmd/gatekeeper links github.com/licenseledger/ledger/internal/faulttest",
			"./cmd/gatekeeper links github.com/chromedp/chromedp",
			"./cmd/gatekeeper links github.com/getkin/kin-openapi/openapi3filter",
			"./cmd/gatekeeper links github.com/nats-io/nats-server/v2/server"},
	}
	for cmd, w := range want {
		got := checkLinked(cmd, deps)
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("checkLinked(%s) =\n%s\nwant\n%s", cmd, strings.Join(got, "\n"), strings.Join(w, "\n"))
		}
	}
}

// The gatekeeper binary is built on the public packages any Go program
// can import — the gate, its follower and the stream's NATS door — and,
// of this module's internal packages, only process plumbing: flags,
// logging and exit codes (internal/cli), SIGHUP (internal/sighup) and the
// build's version (internal/buildinfo).
var gatekeeperPlumbing = []string{"github.com/licenseledger/ledger/internal/cli", "github.com/licenseledger/ledger/internal/sighup",
	"github.com/licenseledger/ledger/internal/buildinfo"}

// internalImports lists the imports of module packages under internal/
// that allowed does not name.
func internalImports(imports, allowed []string) []string {
	var p []string
	for _, imp := range imports {
		if strings.HasPrefix(imp, "github.com/licenseledger/ledger/internal/") && !slices.Contains(allowed, imp) {
			p = append(p, imp)
		}
	}
	return p
}

func TestGatekeeperIsBuiltOnThePublicPackages(t *testing.T) {
	c := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "./cmd/gatekeeper")
	c.Dir = repoRoot(t)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/gatekeeper: %v", err)
	}
	imports := strings.Fields(string(out))
	if !slices.Contains(imports, "github.com/licenseledger/ledger/gatekeeper/follow") {
		t.Fatalf("cmd/gatekeeper does not import gatekeeper/follow: %v", imports)
	}
	for _, imp := range internalImports(imports, gatekeeperPlumbing) {
		t.Errorf("cmd/gatekeeper imports %s: the gatekeeper is built on public packages and plumbing (%v)", imp, gatekeeperPlumbing)
	}
	if got := internalImports([]string{"fmt", "github.com/licenseledger/ledger/internal/cli",
		"github.com/licenseledger/ledger/internal/projection", "github.com/licenseledger/ledger/license"}, gatekeeperPlumbing); !slices.Equal(got, []string{"github.com/licenseledger/ledger/internal/projection"}) {
		t.Errorf("the check itself: %v", got)
	}
}
