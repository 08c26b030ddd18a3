package main

// The tests of docs/operations.md that are not in backup_test.go and
// stream_test.go: each section's commands, run as the runbook writes them.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/license"
)

// oldKidSQL is the runbook's query for the orgs whose current or pending
// license is still signed with the key being retired ($1).
const oldKidSQL = `SELECT org_slug FROM org_licenses
 WHERE split_part(license_key, '.', 2) = $1 OR split_part(pending_license_key, '.', 2) = $1
 ORDER BY org_slug`

// Rotating the vendor key: trust the new kid next to the old one (SIGHUP),
// renew with it, find the licenses still on the old kid, retire it.
func TestRunbookRotateVendorKey(t *testing.T) {
	ctx := context.Background()
	owner := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, owner, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	app := pgtest.LoginRole(t, owner, "ledger_app")
	pool := pgtest.NewPool(t, owner)
	dir := t.TempDir()
	oldKey, _ := vendorKey("vendor-2025")
	newKey, _ := vendorKey("vendor-2026")
	keysFile := writeFile(t, dir, "vendor.keys", oldKey+"\n")
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.PublicKeys, c.PublicKeysFile, c.DatabaseURL = "", keysFile, app })
	fingerprint := func() string {
		_, out, _ := l.client(t, "", "status", "--install")
		return jsonObject(t, out)["keyring_fingerprint"].(string)
	}
	reload := func(content string) {
		t.Helper()
		before := fingerprint()
		writeFile(t, dir, "vendor.keys", content)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the key ring reloads on SIGHUP", func() bool { return fingerprint() != before })
	}
	upload := func(kid, org, id, issued string, wantCode int) map[string]any {
		t.Helper()
		key := signed(t, kid, func(p map[string]any) {
			p["org_slug"], p["license_id"], p["issued_at"], p["expires"] = org, id, issued, future(300*24*time.Hour)
		})
		code, out, errOut := l.client(t, key, "upload", "--org", org, "-")
		if code != wantCode {
			t.Fatalf("upload %s signed by %s: exit %d %s %s", org, kid, code, out, errOut)
		}
		if code != 0 {
			return nil
		}
		return jsonObject(t, out)
	}
	// stillOnOld waits for the projector to reach seq, then asks.
	stillOnOld := func(seq any) []string {
		t.Helper()
		waitFor(t, "the projector catches up", func() bool {
			var last float64
			pool.QueryRow(ctx, `SELECT last_seq FROM projection_checkpoints`).Scan(&last)
			return last >= seq.(float64)
		})
		rows, err := pool.Query(ctx, oldKidSQL, "vendor-2025")
		if err != nil {
			t.Fatal(err)
		}
		orgs := []string{}
		for rows.Next() {
			var org string
			rows.Scan(&org)
			orgs = append(orgs, org)
		}
		return orgs
	}
	upload("vendor-2025", "acme", "0193a5b0-7e1a-7c3d-8f00-0000000000a1", "2026-11-01T00:00:00Z", 0)
	upload("vendor-2025", "globex", "0193a5b0-7e1a-7c3d-8f00-0000000000b1", "2026-11-01T00:00:00Z", 0)
	// Not trusted yet: refused.
	upload("vendor-2026", "acme", "0193a5b0-7e1a-7c3d-8f00-0000000000a2", "2026-11-20T00:00:00Z", 3)

	// 1. Trust the new kid beside the old one; reload.
	reload(oldKey + "\n" + newKey + "\n")
	// 2. Renewals are signed with the new key.
	st := upload("vendor-2026", "acme", "0193a5b0-7e1a-7c3d-8f00-0000000000a2", "2026-11-20T00:00:00Z", 0)
	if st["status"] != "valid" {
		t.Fatalf("renewal: %v", st)
	}
	// 3. Who still holds a license of the old kid?
	if got := stillOnOld(st["seq"]); !slices.Equal(got, []string{"globex"}) {
		t.Fatalf("orgs on the old kid: %v", got)
	}
	// The audit trail names every upload ever signed with it.
	code, out, _ := cliRun(t, "", "audit", "export", "--database-url", app, "--type", "license.uploaded")
	var uploadedWithOld []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "hfl1.vendor-2025.") {
			var r struct{ Org string }
			json.Unmarshal([]byte(line), &r)
			uploadedWithOld = append(uploadedWithOld, r.Org)
		}
	}
	if code != 0 || !slices.Equal(uploadedWithOld, []string{"acme", "globex"}) {
		t.Fatalf("uploads signed with the old kid: exit %d %v", code, uploadedWithOld)
	}
	st = upload("vendor-2026", "globex", "0193a5b0-7e1a-7c3d-8f00-0000000000b2", "2026-11-20T00:00:00Z", 0)
	if got := stillOnOld(st["seq"]); len(got) != 0 {
		t.Fatalf("orgs on the old kid after the renewals: %v", got)
	}
	// 4. Retire the old kid: every current license stays valid.
	reload(newKey + "\n")
	for _, org := range []string{"acme", "globex"} {
		if _, st := l.call("GET", "/api/license?org="+org, ""); st["status"] != "valid" {
			t.Fatalf("%s after the old kid's retirement: %v", org, st)
		}
	}
}

// foldSource serves a gatekeeper.Gate the states it folds from the stream
// on every call, as a gatekeeper folds an org's subject directly.
type foldSource struct {
	bus   *natsbus.Bus
	trust projection.Trust
}

func (s foldSource) fold(ctx context.Context, org string) (*license.OrgState, error) {
	subject := events.OrgSubject(org)
	st := license.NewOrgState(org)
	head, err := s.bus.Head(ctx, subject)
	if err != nil {
		return nil, err
	}
	err = s.bus.ReadSubject(ctx, subject, 0, head, func(m *events.Message) error {
		st, _, _ = projection.Apply(s.trust, st, m)
		return nil
	})
	return st, err
}

func (s foldSource) State(ctx context.Context, org string, _ uint64) (own, inst *license.OrgState, err error) {
	if own, err = s.fold(ctx, org); err != nil {
		return nil, nil, err
	}
	inst, err = s.fold(ctx, license.InstanceOrg)
	return own, inst, err
}

// gateFor decides requests as a gatekeeper following the ledger's NATS at
// natsAddr with $DATA_DIR/nats/reader.nk would; enforce is
// LICENSE_ENFORCE (nil: unset).
func gateFor(t *testing.T, dataDir, natsAddr string, enforce *bool) func(method, path string) gatekeeper.Decision {
	t.Helper()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: "nats://" + natsAddr, NKeyFile: filepath.Join(dataDir, "nats", "reader.nk")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	bus, _, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := vendorKey("k1")
	keys, _ := license.NewKeys(license.RingConfig{Env: ring})
	ui, err := gatekeeper.AllowUI("/ui/")
	if err != nil {
		t.Fatal(err)
	}
	gate, err := gatekeeper.New(foldSource{bus: bus, trust: projection.Trust{Ring: keys.Ring()}},
		gatekeeper.Config{Enforce: enforce, DecisionTimeout: 5 * time.Second, Allow: []string{ui}})
	if err != nil {
		t.Fatal(err)
	}
	return func(method, path string) gatekeeper.Decision {
		r, _ := http.NewRequest(method, "http://app.example"+path, http.NoBody)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Org-Slug", "acme")
		return gate.Decide(r)
	}
}

// An install locked out by a bad instance-wide license: the allowlisted
// renewal routes (the license endpoints, the probes, the ledger's UI on a
// gatekeeper with --allow-ui) stay open; enforcement off (or LICENSE_ENFORCE=0 on the
// gatekeepers) lets everyone in; a new instance license (--force when its
// issued_at is older) ends it; removing the bad one alone does not.
func TestRunbookInstanceLicenseLockout(t *testing.T) {
	dir := t.TempDir()
	natsAddr := strings.TrimPrefix(closedPort(t), "http://")
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = natsAddr })
	instance := func(id, issued string) string {
		return signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["issued_at"], p["expires"] = "*", id, issued, future(300*24*time.Hour)
		})
	}
	cli := func(wantCode int, stdin string, args ...string) map[string]any {
		t.Helper()
		code, out, errOut := l.client(t, stdin, args...)
		if code != wantCode {
			t.Fatalf("ledger %v: exit %d, want %d\n%s%s", args, code, wantCode, out, errOut)
		}
		if code != 0 {
			return map[string]any{"stderr": errOut}
		}
		return jsonObject(t, out)
	}
	const badID = "0193a5b0-7e1a-7c3d-8f00-0000000000c1"
	if st := cli(0, instance(badID, "2026-11-20T00:00:00Z"), "upload", "--org", "_instance", "-"); st["status"] != "valid" || st["enforcement"] != "on" {
		t.Fatalf("instance license: %v", st)
	}
	decide := gateFor(t, dir, natsAddr, nil)
	if d := decide("GET", "/app"); !d.Allowed {
		t.Fatalf("acme on the instance license: %+v", d)
	}
	// The instance license goes bad (here: revoked by mistake).
	cli(0, "", "invalidate", "--org", "_instance", "--license-id", badID, "--note", "revoked by mistake")
	if st := cli(0, "", "status", "--org", "acme"); st["status"] != "invalid" || st["resolved_from"] != "instance" {
		t.Fatalf("acme with a revoked instance license: %v", st)
	}
	if d := decide("GET", "/app"); d.Allowed || d.Code != "license_invalid" {
		t.Fatalf("locked out: %+v", d)
	}
	for _, path := range []string{"/api/license", "/healthz", "/ui/settings/license"} {
		if d := decide("GET", path); !d.Allowed || !d.Allowlisted {
			t.Fatalf("renewal route %s while locked out: %+v", path, d)
		}
	}
	// Way out 1: enforcement off, install-wide, at once.
	if m := cli(0, "", "enforcement", "set", "off"); m["mode"] != "off" {
		t.Fatalf("enforcement off: %v", m)
	}
	if d := decide("GET", "/app"); !d.Allowed || !d.Unenforced {
		t.Fatalf("enforcement off: %+v", d)
	}
	cli(0, "", "enforcement", "set", "on")
	if d := decide("GET", "/app"); d.Allowed {
		t.Fatalf("enforcement on again: %+v", d)
	}
	// Way out 2, for gatekeepers cut off from the ledger: LICENSE_ENFORCE=0.
	off := false
	if d := gateFor(t, dir, natsAddr, &off)("GET", "/app"); !d.Allowed {
		t.Fatalf("LICENSE_ENFORCE=0: %+v", d)
	}
	// The fix: a new instance license; an older issued_at needs --force.
	older := instance("0193a5b0-7e1a-7c3d-8f00-0000000000c2", "2026-11-10T00:00:00Z")
	if m := cli(3, older, "upload", "--org", "_instance", "-"); !strings.HasPrefix(m["stderr"].(string), "license_older_than_current: ") {
		t.Fatalf("older instance license: %v", m)
	}
	if st := cli(0, older, "upload", "--org", "_instance", "--force", "-"); st["status"] != "valid" {
		t.Fatalf("--force: %v", st)
	}
	if d := decide("GET", "/app"); !d.Allowed || d.Unenforced {
		t.Fatalf("after the new instance license: %+v", d)
	}
	// Removing the instance license leaves orgs without one of their own
	// with none: with enforcement on, that is a lockout too.
	cli(0, "", "remove", "--org", "_instance")
	if d := decide("GET", "/app"); d.Allowed || d.Code != "license_missing" {
		t.Fatalf("no instance license: %+v", d)
	}
}

// Upgrade order: a ledger newer than its readers writes events they cannot
// read. The projector stops loudly and the gatekeepers' fold skips them
// (state unchanged) rather than misapply them: upgrade readers first.
func TestRunbookUpgradeOrder(t *testing.T) {
	ctx := context.Background()
	owner := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, owner, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	app := pgtest.LoginRole(t, owner, "ledger_app")
	dir := t.TempDir()
	natsAddr := strings.TrimPrefix(closedPort(t), "http://")
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen, c.DatabaseURL = natsAddr, app })
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(300 * 24 * time.Hour) })
	code, up := l.call("POST", "/api/license?org=acme", key)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, up)
	}
	// What a newer ledger would append: schema 2, on acme's subject.
	env, err := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: events.ActorOperator, ID: "newer-ledger"},
		uint64(up["seq"].(float64)), map[string]any{"license_id": up["license_id"]})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = uuid.Must(uuid.NewV7()).String()
	raw, _ := env.Encode()
	raw = []byte(strings.Replace(string(raw), `"schema":1`, `"schema":2`, 1))
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: "nats://" + natsAddr, NKeyFile: filepath.Join(dir, "nats", "ledger.nk")})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "licenses.org.acme", raw, jetstream.WithMsgID(env.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the projector stops on the newer schema", func() bool {
		_, rd := l.call("GET", "/readyz", "")
		p, _ := rd["projector"].(string)
		return strings.HasPrefix(p, "stopped: ") && strings.Contains(p, "upgrade")
	})
	// The gatekeepers' fold keeps acme's license; so does the ledger.
	if d := gateFor(t, dir, natsAddr, nil)("GET", "/app"); !d.Allowed || d.LicenseStatus != license.StatusValid {
		t.Fatalf("a reader older than the event: %+v", d)
	}
	if _, st := l.call("GET", "/api/license?org=acme", ""); st["status"] != "valid" {
		t.Fatalf("ledger status: %v", st)
	}
}
