package ledger_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// The ledger holds no license key text once a license is verified (the
// stream holds it); a key ring reload verifies every license again from
// its key read back from the stream: a withdrawn vendor key makes the
// license unknown_key, the key trusted again makes it valid again.
func TestReverifyReadsKeysBack(t *testing.T) { onEachStore(t, testReverifyReadsKeysBack) }

func testReverifyReadsKeysBack(t *testing.T, f *fixture) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "vendor.keys")
	trust := func(kids ...string) {
		t.Helper()
		var lines []string
		for _, k := range kids {
			lines = append(lines, licensetest.RingEntry(k))
		}
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	trust("k1")
	keys, err := license.NewKeys(license.RingConfig{File: file, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	svc := ledger.New(ledger.Config{Store: f.store, Keys: keys, DefaultGraceDays: 7, Now: f.now, Version: "test"})
	if err := svc.Start(ctx, events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	orgs := []string{"acme", "globex"}
	for _, org := range orgs {
		if _, err := upload(t, svc, org, sign(t, "k1", func(p map[string]any) { p["org_slug"] = org })); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, want license.Reason) {
		t.Helper()
		for _, org := range orgs {
			cur := svc.State(org).Current
			if cur == nil || license.ReasonOf(cur.Err) != want {
				t.Fatalf("%s, %s: %+v, want reason %q", when, org, cur, want)
			}
			if cur.Key != "" || cur.License != nil && cur.License.Key != "" {
				t.Errorf("%s, %s: the key text is held", when, org)
			}
		}
	}
	reload := func(kids ...string) {
		t.Helper()
		trust(kids...)
		if changed, err := keys.Reload(); err != nil || !changed {
			t.Fatalf("reload: %v %v", changed, err)
		}
		svc.Reverify(ctx)
	}
	check("uploaded", "")
	reload("k2")
	check("key withdrawn", license.ReasonUnknownKey)
	if r, err := svc.Status(ctx, "acme"); err != nil || r.Status != license.StatusInvalid {
		t.Fatalf("acme with its key withdrawn: %+v %v", r, err)
	}
	reload("k1", "k2")
	check("key trusted again", "")
	if r, err := svc.Status(ctx, "acme"); err != nil || r.Status != license.StatusValid {
		t.Fatalf("acme with its key trusted again: %+v %v", r, err)
	}
}
