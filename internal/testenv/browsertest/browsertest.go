// Package browsertest drives Debian's headless Chromium from tests with
// chromedp: one fresh browser profile per test, screenshots kept as test
// artifacts, and the page's console errors and uncaught exceptions
// collected. Without Chromium a test is skipped, or fails when CI is set.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path finds the browser: LEDGER_TEST_CHROMIUM, else chromium on PATH,
// else /usr/bin/chromium. "" when there is none.
func Path() string {
	if p := os.Getenv("LEDGER_TEST_CHROMIUM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// ArtifactsDir is where a test's screenshots go: $LEDGER_TEST_ARTIFACTS/<test>,
// else <os.TempDir()>/ledger-test-artifacts/<test>. It is emptied of an
// earlier run's files, and its path logged.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv("LEDGER_TEST_ARTIFACTS")
	if root == "" {
		root = filepath.Join(os.TempDir(), "ledger-test-artifacts")
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.RemoveAll(dir); err != nil { // this run's screenshots only
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	t testing.TB
	// Ctx runs chromedp actions in the tab; it ends with the test, or
	// after the timeout given to New.
	Ctx       context.Context
	Artifacts string

	mu     sync.Mutex
	errors []string
	shots  int
}

// New starts Chromium with a fresh profile and a width×height window. The
// browser is stopped when the test ends; a failed test leaves a
// screenshot named "failed".
func New(t testing.TB, width, height int, timeout time.Duration) *Browser {
	t.Helper()
	path := Path()
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (apt-get install chromium); CI requires the browser tests")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers and CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("password-store", "basic"),
		// Offline: no background service of the browser reaches out, and
		// no host name resolves, so a page that needs anything beyond the
		// loopback address under test fails.
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	b := &Browser{t: t, Ctx: ctx, Artifacts: ArtifactsDir(t)}
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	chromedp.ListenTarget(ctx, b.collect)
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	t.Cleanup(func() {
		if t.Failed() && ctx.Err() == nil {
			b.Screenshot("failed")
		}
	})
	return b
}

func (b *Browser) collect(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.APITypeError {
			return
		}
		parts := []string{}
		for _, a := range e.Args {
			parts = append(parts, string(a.Value))
		}
		msg = "console.error: " + strings.Join(parts, " ")
	case *log.EventEntryAdded:
		if e.Entry.Level != log.LevelError {
			return
		}
		msg = "log: " + e.Entry.Text + " " + e.Entry.URL
	default:
		return
	}
	b.mu.Lock()
	b.errors = append(b.errors, msg)
	b.mu.Unlock()
}

// Errors returns the page errors seen so far: uncaught exceptions,
// console.error calls and the browser's error log (failed loads, policy
// violations).
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Run runs actions in the tab, failing the test on error with what.
func (b *Browser) Run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := chromedp.Run(b.Ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Screenshot saves the whole page as NN-name.png in the artifacts
// directory and returns the file's path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	var png []byte
	if err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.mu.Lock()
	b.shots++
	n := b.shots
	b.mu.Unlock()
	p := filepath.Join(b.Artifacts, fmt.Sprintf("%02d-%s.png", n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
	return p
}

// Text returns the text of the first node matching sel, waiting for it to
// be visible.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	var s string
	b.Run("text of "+sel, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

// Texts returns the texts of every node matching sel (none: empty).
func (b *Browser) Texts(sel string) []string {
	b.t.Helper()
	var nodes []*cdp.Node
	b.Run("nodes "+sel, chromedp.Nodes(sel, &nodes, chromedp.ByQueryAll, chromedp.AtLeast(0)))
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		var s string
		b.Run("text of "+sel, chromedp.Text([]cdp.NodeID{n.NodeID}, &s, chromedp.ByNodeID))
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// Eval evaluates a JavaScript expression in the page into v.
func (b *Browser) Eval(expr string, v any) {
	b.t.Helper()
	b.Run("eval "+expr, chromedp.Evaluate(expr, v))
}

// WaitFor polls the JavaScript expression cond until it is true, failing
// the test with what after d.
func (b *Browser) WaitFor(what, cond string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		if err := chromedp.Run(b.Ctx, chromedp.Evaluate("!!("+cond+")", &ok)); err == nil && ok {
			return
		} else if time.Now().After(deadline) || b.Ctx.Err() != nil {
			b.t.Fatalf("waiting for %s (%s): err=%v", what, cond, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
