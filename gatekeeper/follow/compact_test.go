package follow

import (
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

// A replica keeps no license key text: the cached state holds what
// decisions and status reports need, and reports what the ledger
// reports.
func TestCachedStateHoldsNoKeyText(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	eventually(t, 5*time.Second, "every key verified", func() bool { return f.UnverifiedOrgs() == 0 })
	loaded := f.cached("acme")
	_, res := e.upload(t, "acme") // applied live, not only loaded
	eventually(t, 5*time.Second, "the upload applied", func() bool { return seqOf(f.cached("acme")) >= res.Seq })
	for name, st := range map[string]*license.OrgState{"loaded": loaded, "applied": f.cached("acme")} {
		cur := st.Current
		if cur == nil || cur.License == nil || cur.Err != nil {
			t.Fatalf("%s: no verified current license: %+v", name, st)
		}
		if cur.Key != "" || cur.License.Key != "" {
			t.Errorf("%s: the key text is held", name)
		}
	}
	st := f.cached("acme")
	want := e.svc.State("acme")
	at := time.Now()
	if got, exp := license.ReportOf("acme", st, nil, at), license.ReportOf("acme", want, nil, at); !reflect.DeepEqual(got, exp) {
		t.Errorf("the replica reports\n%+v\nthe ledger\n%+v", got, exp)
	}
	if st.Current.Fingerprint != want.Current.Fingerprint || st.Current.LicenseID != want.Current.LicenseID {
		t.Errorf("fingerprint or license id differ: %s %s", st.Current.Fingerprint, st.Current.LicenseID)
	}
}

// A key ring reload verifies every license again from its key read back
// from the stream — the upload event at the slot's sequence, or, for a
// slot loaded from PostgreSQL (no sequence), the org's subject: a
// withdrawn vendor key makes the license unknown_key, the key trusted
// again makes it valid again.
func TestReverifyReadsKeysBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	e.upload(t, "beta")
	e.upload(t, "beta")
	dsn, pool := migrated(t)
	pr := e.runProjector(t, pool)
	pr.caughtUp(t, e)
	pr.stop()
	for _, fromPG := range []bool{false, true} {
		file := keyFile(t, "k1")
		keys, err := license.NewKeys(license.RingConfig{File: file, NoBuiltin: true})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Stream: e.readerBus(t), Keys: keys}
		if fromPG {
			cfg.DatabaseURL = dsn
		}
		f := start(t, cfg, true)
		reload := func(kids ...string) {
			t.Helper()
			data, err := os.ReadFile(keyFile(t, kids...))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if ch, err := keys.Reload(); err != nil || !ch {
				t.Fatalf("reload: %v %v", ch, err)
			}
			f.Reverify()
		}
		check := func(when string, want license.Reason) {
			t.Helper()
			for _, org := range []string{"acme", "beta"} {
				own, _ := mustState(t, f, org, 0)
				if got := license.ReasonOf(own.Current.Err); got != want {
					t.Errorf("from PostgreSQL %v, %s, %s: reason %q, want %q", fromPG, when, org, got, want)
				}
				if own.Current.Key != "" {
					t.Errorf("from PostgreSQL %v, %s, %s: the key text is held after re-verification", fromPG, when, org)
				}
				if want := e.svc.State(org).Current.Fingerprint; own.Current.Fingerprint != want {
					t.Errorf("from PostgreSQL %v, %s, %s: another license: %s", fromPG, when, org, own.Current.Fingerprint)
				}
			}
		}
		if own, _ := mustState(t, f, "beta", 0); (own.Current.Seq == 0) != fromPG {
			t.Fatalf("from PostgreSQL %v: the slot's sequence is %d", fromPG, own.Current.Seq)
		}
		check("loaded", "")
		reload("k2")
		check("key withdrawn", license.ReasonUnknownKey)
		reload("k1", "k2")
		check("key trusted again", "")
	}
}
