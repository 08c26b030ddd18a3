package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/testenv/browsertest"
)

// q is a chromedp query by CSS selector.
var q = chromedp.ByQuery

// uiLedger starts a ledger whose data dir holds the operator token, an
// org_admin token for acme and an auditor token for every org.
func uiLedger(t *testing.T) (l *ledgerProc, acmeAdmin, auditor string) {
	t.Helper()
	return uiLedgerWith(t, nil)
}

// uiLedgerWith is uiLedger with mod (nil: none) applied to the command.
func uiLedgerWith(t *testing.T, mod func(*serveCmd)) (l *ledgerProc, acmeAdmin, auditor string) {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := auth.LoadOrCreateAdminToken(filepath.Join(dir, "admin.token")); err != nil {
		t.Fatal(err)
	}
	acmeAdmin = strings.Repeat("a", 20) + "-acme-admin-token-0123456789"
	auditor = strings.Repeat("c", 20) + "-compliance-token-0123456789"
	e, err := auth.NewEntry(acmeAdmin, auth.RoleOrgAdmin, []string{"acme"}, "acme-admin")
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewEntry(auditor, auth.RoleAuditor, []string{"*"}, "compliance")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte(e.Line()+"\n"+a.Line()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startLedgerWith(t, dir, func(c *serveCmd) {
		c.CheckpointInterval = 100 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	}), acmeAdmin, auditor
}

// signIn signs in on the page with the keyboard: the token, then Enter.
func signIn(b *browsertest.Browser, base, token string) {
	b.Run("sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#signin-token", q))
	b.Run("type the token", chromedp.SendKeys("#signin-token", token+"\r", q))
	b.WaitFor("signed in", `!document.querySelector('#who').hidden`, 20*time.Second)
}

// pasteAndUpload puts key in the paste box, uploads it, and returns the
// message shown.
func pasteAndUpload(b *browsertest.Browser, key string) (kind, text string) {
	b.Run("paste", chromedp.WaitVisible("#upload-text", q), chromedp.SetValue("#upload-text", key, q))
	b.Run("upload", chromedp.Evaluate(`document.querySelector('#upload-result').replaceChildren()`, nil),
		chromedp.Click("#upload-submit", q))
	b.WaitFor("upload answer", `document.querySelector('#upload-result .msg')`, 20*time.Second)
	var cls string
	b.Eval(`document.querySelector('#upload-result .msg').className`, &cls)
	return cls, b.Text("#upload-result .msg")
}

// licenseView is what Settings → License shows.
type licenseView struct {
	Badge, BadgeStatus, Customer, Tier, Expires, Users, Products, LicenseID string
	Features                                                                []string
}

func readLicense(b *browsertest.Browser) licenseView {
	var v licenseView
	b.Eval(`(() => {
		const t = (id) => document.getElementById(id).textContent.trim();
		return {Badge: t('lic-badge'), BadgeStatus: document.getElementById('lic-badge').dataset.status,
			Customer: t('lic-customer'), Tier: t('lic-tier'), Expires: t('lic-expires'), Users: t('lic-users'),
			Products: t('lic-products'), LicenseID: t('lic-id'),
			Features: [...document.querySelectorAll('#lic-features li')].map(li => li.textContent.trim())};
	})()`, &v)
	return v
}

func openLicense(b *browsertest.Browser, base, org string) licenseView {
	b.Run("open license of "+org, chromedp.Navigate(base+"/ui/license/?org="+org))
	b.WaitFor("license of "+org, `document.querySelector('#lic-org').textContent === '`+org+`' && !document.querySelector('#license-view').hidden`, 20*time.Second)
	return readLicense(b)
}

// unlabelled lists the page's form controls that have no label.
func unlabelled(b *browsertest.Browser) []string {
	var ids []string
	b.Eval(`[...document.querySelectorAll('input, select, textarea')].filter(e => e.type !== 'hidden' && e.labels.length === 0).map(e => e.id || e.outerHTML)`, &ids)
	return ids
}

// auditRecords is what the API lists for a query.
// uploadAs uploads a license for org with license_id id and customer
// "<org> Inc", changed by mod, and fails the test unless it is accepted.
func (p *ledgerProc) uploadAs(t *testing.T, org, id string, mod func(map[string]any)) {
	t.Helper()
	key := signed(t, "k1", func(pl map[string]any) {
		pl["org_slug"], pl["customer"], pl["license_id"] = org, org+" Inc", id
		mod(pl)
	})
	if code, m := p.call("POST", "/api/license?org="+org, key); code != 200 {
		t.Fatalf("upload %s: %d %v", org, code, m)
	}
}

func auditRecords(t *testing.T, l *ledgerProc, query string) []map[string]any {
	t.Helper()
	code, m := l.call("GET", "/api/audit?limit=5000&"+query, "")
	if code != 200 {
		t.Fatalf("audit %s: %d %v", query, code, m)
	}
	var out []map[string]any
	for _, e := range m["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// The web UI in a real browser against a real ledger: sign in, renew,
// a tampered key, a license that expires on the page, the organizations
// list, the audit history with its exports and chain verification, an
// org admin's narrower view, and a phone-width layout.
func TestWebUIInBrowser(t *testing.T) {
	l, acmeAdmin, auditor := uiLedger(t)
	b := browsertest.New(t, 1280, 900, 3*time.Minute)

	// / leads to the sign-in page; a wrong token is refused in words.
	b.Run("open /", chromedp.Navigate(l.url+"/"), chromedp.WaitVisible("#signin-token", q))
	var loc string
	b.Run("location", chromedp.Location(&loc))
	if loc != l.url+"/ui/" {
		t.Fatalf("/ led to %s", loc)
	}
	b.Run("wrong token", chromedp.SendKeys("#signin-token", strings.Repeat("x", 40)+"\r", q))
	b.WaitFor("sign-in error", `!document.querySelector('#signin-error').hidden`, 20*time.Second)
	if msg := b.Text("#signin-error"); !strings.Contains(msg, "not known to the ledger") {
		t.Fatalf("wrong token: %q", msg)
	}
	if ids := unlabelled(b); len(ids) > 0 {
		t.Errorf("controls without a label on the sign-in page: %v", ids)
	}
	b.Screenshot("signin-refused")

	// The operator signs in and lands on Settings → License, with every page in the navigation.
	signIn(b, l.url, l.token)
	b.WaitFor("license page", `location.pathname === '/ui/license/'`, 20*time.Second)
	if nav := b.Texts("#nav li:not([hidden]) a"); !slices.Equal(nav, []string{"Settings → License", "Organizations", "Audit history"}) {
		t.Fatalf("operator navigation: %q", nav)
	}
	var stored string
	b.Eval(`sessionStorage.getItem('ledger.token') + '|' + localStorage.length + '|' + document.cookie`, &stored)
	if stored != l.token+"|0|" {
		t.Fatalf("the token must live in sessionStorage only: %q", stored)
	}

	// An org with nothing yet: gray, said to be unknown here (no event at all).
	if v := openLicense(b, l.url, "acme"); v.Badge != "Unknown organization" || v.BadgeStatus != "missing" || len(v.Features) != 0 ||
		!strings.HasPrefix(b.Text("#lic-note"), `No organization named "acme" has any license event here`) {
		t.Fatalf("acme before upload: %+v %q", v, b.Text("#lic-note"))
	}
	if ids := unlabelled(b); len(ids) > 0 {
		t.Errorf("controls without a label on the license page: %v", ids)
	}

	// A valid key pasted: green "Active" at once, with every field.
	valid := signed(t, "k1", func(p map[string]any) {
		p["customer"], p["tier"], p["users_limit"] = "Acme Corp", "enterprise", 50
		p["features"], p["products"] = []string{"chat_connector", "sso"}, []string{"helpdesk"}
		p["expires"] = future(365*24*time.Hour + time.Hour)
	})
	kind, msg := pasteAndUpload(b, valid)
	v := readLicense(b)
	if !strings.Contains(kind, "ok") || !strings.Contains(msg, "License uploaded for acme") {
		t.Fatalf("valid upload: %s %q", kind, msg)
	}
	want := licenseView{Badge: "Active", BadgeStatus: "valid", Customer: "Acme Corp", Tier: "Enterprise",
		Users: "50", Products: "helpdesk", LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab",
		Features: []string{"chat_connector", "sso"}}
	if v.Expires == "" || !strings.HasSuffix(v.Expires, "365 days left") {
		t.Errorf("expiry shown as %q", v.Expires)
	}
	v.Expires = ""
	if !equalViews(v, want) {
		t.Fatalf("after a valid upload:\n got %+v\nwant %+v", v, want)
	}
	var bg string
	b.Eval(`getComputedStyle(document.getElementById('lic-badge')).backgroundColor`, &bg)
	if bg != "rgb(26, 127, 55)" {
		t.Errorf("Active badge colour %s, want green", bg)
	}
	b.Screenshot("valid-upload")
	_, before := l.call("GET", "/api/license?org=acme", "")

	// A tampered key: the error in words, and nothing changed.
	newer := signed(t, "k1", func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-00000000beef"
		p["features"] = []string{"chat_connector", "sso", "export"}
		p["issued_at"] = future(0)
		p["expires"] = future(2 * 365 * 24 * time.Hour)
	})
	parts := strings.Split(newer, ".")
	mid := len(parts[2]) / 2
	flip := map[byte]byte{'A': 'B'}[parts[2][mid]]
	if flip == 0 {
		flip = 'A'
	}
	parts[2] = parts[2][:mid] + string(flip) + parts[2][mid+1:]
	kind, msg = pasteAndUpload(b, strings.Join(parts, "."))
	if !strings.Contains(kind, "error") || !strings.Contains(msg, "Not uploaded: nothing was changed.") ||
		!strings.Contains(msg, "signature does not match its contents") {
		t.Fatalf("tampered upload: %s %q", kind, msg)
	}
	if got := readLicense(b); got.Badge != "Active" || !slices.Equal(got.Features, want.Features) || got.LicenseID != want.LicenseID {
		t.Fatalf("a rejected upload changed the page: %+v", got)
	}
	b.Screenshot("tampered-rejected")
	if _, after := l.call("GET", "/api/license?org=acme", ""); after["seq"] != before["seq"] || after["license_id"] != before["license_id"] {
		t.Fatalf("a rejected upload changed the ledger: %v -> %v", before, after)
	}
	if got := openLicense(b, l.url, "acme"); got.Badge != "Active" || !slices.Equal(got.Features, want.Features) {
		t.Fatalf("after reload: %+v", got)
	}

	// A renewal that starts later is shown as pending; the current license stays.
	renewal := signed(t, "k1", func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000a2"
		p["issued_at"], p["not_before"] = future(0), future(48*time.Hour)
		p["expires"] = future(3 * 365 * 24 * time.Hour)
	})
	if code, m := l.call("POST", "/api/license?org=acme", renewal); code != 200 || m["pending"] == nil {
		t.Fatalf("pending renewal: %d %v", code, m)
	}
	if got := openLicense(b, l.url, "acme"); got.Badge != "Active" || got.LicenseID != want.LicenseID ||
		!strings.Contains(b.Text("#lic-pending-text"), "License 0193a5b0-7e1a-7c3d-8f00-0000000000a2 is stored and takes over at") {
		t.Fatalf("pending renewal shown as %+v", got)
	}

	// An older license is refused in words; an operator may force it.
	older := signed(t, "k1", func(p map[string]any) {
		p["license_id"], p["issued_at"] = "0193a5b0-7e1a-7c3d-8f00-0000000001d0", "2026-10-01T00:00:00Z"
		p["features"], p["expires"] = []string{"sso"}, future(400*24*time.Hour)
	})
	kind, msg = pasteAndUpload(b, older)
	if !strings.Contains(kind, "error") || !strings.Contains(msg, "issued before the one already in force") {
		t.Fatalf("older upload: %s %q", kind, msg)
	}
	b.Run("force", chromedp.WaitVisible("#upload-force", q), chromedp.Click("#upload-force", q))
	if kind, msg = pasteAndUpload(b, older); !strings.Contains(kind, "ok") {
		t.Fatalf("forced upload: %s %q", kind, msg)
	}
	if got := readLicense(b); got.Badge != "Active" || got.LicenseID != "0193a5b0-7e1a-7c3d-8f00-0000000001d0" || !slices.Equal(got.Features, []string{"sso"}) {
		t.Fatalf("after the forced upload: %+v", got)
	}

	// A license with no grace that runs out seconds after upload: red "Expired" after a reload.
	// On a slow machine the upload may come after the expiry; then again
	// with a longer life.
	openLicense(b, l.url, "brief")
	var expires time.Time
	for life := 6 * time.Second; ; life *= 2 {
		expires = time.Now().Add(life)
		short := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["customer"], p["license_id"] = "brief", "Brief Ltd", "0193a5b0-7e1a-7c3d-8f00-0000000b21ef"
			p["features"], p["grace_days"] = []string{"reports"}, 0
			p["expires"] = expires.UTC().Format(time.RFC3339Nano)
		})
		kind, msg = pasteAndUpload(b, short)
		if strings.Contains(kind, "ok") {
			break
		}
		if !strings.Contains(msg, "already expired") || life > time.Minute {
			t.Fatalf("short-lived upload: %s %q", kind, msg)
		}
	}
	if got := readLicense(b); time.Now().Before(expires) && got.Badge != "Active" {
		t.Fatalf("short-lived license before expiry: %+v", got)
	}
	for {
		got := openLicense(b, l.url, "brief")
		if got.Badge == "Expired" {
			if got.BadgeStatus != "expired" || !slices.Equal(got.Features, []string{"reports"}) || !strings.HasSuffix(got.Expires, "expired less than a day ago") {
				t.Fatalf("expired license: %+v", got)
			}
			break
		}
		if got.Badge != "Active" || time.Now().After(expires.Add(30*time.Second)) {
			t.Fatalf("short-lived license %s after expiry: %+v", time.Since(expires), got)
		}
		time.Sleep(300 * time.Millisecond)
	}
	b.Eval(`getComputedStyle(document.getElementById('lic-badge')).backgroundColor`, &bg)
	if bg != "rgb(179, 38, 30)" {
		t.Errorf("Expired badge colour %s, want red", bg)
	}
	b.Screenshot("expired-after-reload")

	// Operators see the install's enforcement mode and set it.
	if got := b.Text("#inst-enforcement"); got != "on" {
		t.Fatalf("enforcement shown as %q", got)
	}
	b.Run("enforcement off", chromedp.SetValue("#enforcement-mode", "off", q), chromedp.Click(`#enforcement-form button`, q))
	b.WaitFor("enforcement set", `document.querySelector('#inst-enforcement').textContent === 'off'`, 20*time.Second)
	if msg := b.Text("#enforcement-result"); msg != "Enforcement is now off." {
		t.Fatalf("enforcement answer %q", msg)
	}
	if _, inst := l.call("GET", "/api/install", ""); inst["enforcement"] != "off" {
		t.Fatalf("enforcement after the page set it: %v", inst)
	}

	// Organizations: every badge, sorting, filtering, and the ones due for renewal marked.
	apiUpload := func(org, id string, mod func(map[string]any)) { t.Helper(); l.uploadAs(t, org, id, mod) }
	apiUpload("soon", "0193a5b0-7e1a-7c3d-8f00-00000000500e", func(p map[string]any) { p["expires"] = future(10 * 24 * time.Hour) })
	apiUpload("late", "0193a5b0-7e1a-7c3d-8f00-00000000001a", func(p map[string]any) {
		p["expires"], p["grace_days"] = expires.UTC().Format(time.RFC3339Nano), 1 // expires with brief's: in grace now
	})
	apiUpload("gone", "0193a5b0-7e1a-7c3d-8f00-0000000090e0", func(p map[string]any) { p["expires"] = future(100 * 24 * time.Hour) })
	if code, m := l.call("POST", "/api/license/invalidate?org=gone", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-0000000090e0","note":"refunded"}`); code != 200 || m["status"] != "invalid" {
		t.Fatalf("invalidate gone: %d %v", code, m)
	}
	b.Run("organizations", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("org rows", `document.querySelectorAll('#orgs-body tr').length === 6`, 20*time.Second)
	var rows []orgRow
	readRows := func() {
		b.Eval(`[...document.querySelectorAll('#orgs-body tr')].map(r => {
			const b = r.querySelector('.badge');
			return {Org: r.dataset.org, Badge: b.textContent + ' ' + getComputedStyle(b).backgroundColor, Class: r.className};
		})`, &rows)
	}
	readRows()
	const green, red, gray, amber = "rgb(26, 127, 55)", "rgb(179, 38, 30)", "rgb(92, 99, 107)", "rgb(246, 195, 67)"
	wantRows := []orgRow{
		{"_instance", "No License " + gray, ""}, {"acme", "Active " + green, ""}, {"brief", "Expired " + red, ""},
		{"gone", "Invalid: revoked " + red, ""}, {"late", "Grace Period " + amber, "soon"}, {"soon", "Active " + green, "soon"},
	}
	if !slices.Equal(rows, wantRows) {
		t.Fatalf("organizations:\n got %v\nwant %v", rows, wantRows)
	}
	b.Run("sort by days left", chromedp.Click(`#orgs-table button[data-sort="days"]`, q))
	readRows()
	// A revoked license's days do not count: it sorts with the orgs without one.
	if order := orgsOf(rows); !slices.Equal(order, []string{"brief", "late", "soon", "acme", "_instance", "gone"}) {
		t.Fatalf("sorted by days left: %v", order)
	}
	b.Screenshot("organizations-by-days-left")
	b.Run("sort by days left, descending", chromedp.Click(`#orgs-table button[data-sort="days"]`, q))
	readRows()
	if order := orgsOf(rows); !slices.Equal(order, []string{"gone", "_instance", "acme", "soon", "late", "brief"}) {
		t.Fatalf("sorted by days left, descending: %v", order)
	}
	b.Run("due for renewal only", chromedp.Click("#orgs-soon", q))
	readRows()
	if order := orgsOf(rows); !slices.Equal(order, []string{"soon", "late"}) {
		t.Fatalf("due for renewal: %v", order)
	}
	b.Run("every org again", chromedp.Click("#orgs-soon", q))
	b.Run("filter", chromedp.SendKeys("#orgs-q", "acm", q))
	readRows()
	if order := orgsOf(rows); !slices.Equal(order, []string{"acme"}) {
		t.Fatalf("filtered by acm: %v", order)
	}
	b.Screenshot("organizations-filtered")

	// The audit history lists exactly the API's events, with actor and source.
	// The scheduler's events come first: none may land while the page loads.
	waitAudit(t, l, "org=brief&type=license.expired")
	waitAudit(t, l, "org=late&type=license.grace_started")
	b.Run("audit", chromedp.Navigate(l.url+"/ui/audit/"))
	b.WaitFor("audit list", `document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	b.WaitFor("chain verified", `document.querySelector('#verify-result p[data-ok]')`, 20*time.Second)
	all := auditRecords(t, l, "")
	var shown []struct{ Seq, Type, Org, Meta, Detail string }
	b.Eval(`[...document.querySelectorAll('#audit-list li')].map(li => ({Seq: li.dataset.seq, Type: li.dataset.type, Org: li.dataset.org,
		Meta: li.querySelector('.ev-meta').textContent, Detail: li.querySelector('.ev-detail').textContent}))`, &shown)
	if len(shown) != len(all) {
		t.Fatalf("audit page shows %d events, the API has %d", len(shown), len(all))
	}
	for i, rec := range all { // newest first
		if s := shown[len(shown)-1-i]; s.Seq != jsonNum(rec["seq"]) || s.Type != rec["type"] || s.Org != rec["org"] {
			t.Fatalf("event %d: shown %+v, API %v", i, s, rec)
		}
	}
	mustShow := func(typ, org string, parts ...string) {
		t.Helper()
		for _, s := range shown {
			if s.Type == typ && s.Org == org && containsAll(s.Meta+" "+s.Detail, parts...) {
				return
			}
		}
		t.Errorf("no %s event for %s showing %q in %+v", typ, org, parts, shown)
	}
	mustShow("license.uploaded", "acme", "by operator token:", "via web UI", "0193a5b0-7e1a-7c3d-8f00-1234567890ab")
	mustShow("license.rejected", "acme", "by operator token:", "via web UI", "signature does not match", "license_signature_invalid")
	mustShow("license.rejected", "acme", "via web UI", "issued before the one already in force", "license_older_than_current")
	mustShow("license.uploaded", "acme", "via web UI", "0193a5b0-7e1a-7c3d-8f00-0000000001d0 in force, replacing 0193a5b0-7e1a-7c3d-8f00-1234567890ab")
	mustShow("license.uploaded", "brief", "via web UI", "grace 0 days")
	mustShow("license.expired", "brief", "by system")
	mustShow("license.grace_started", "late", "by system")
	mustShow("license.uploaded", "soon", "via API")
	mustShow("license.invalidated", "gone", "by operator token:", "revoked for good: refunded")
	mustShow("enforcement.changed", "_instance", "by system enforcement-auto", "set to on")
	mustShow("enforcement.changed", "_instance", "by operator token:", "set to off")
	mustShow("license.uploaded", "acme", "via API", "0193a5b0-7e1a-7c3d-8f00-0000000000a2 stored as pending renewal")
	mustShow("ledger.started", "_instance")
	_, ver := l.call("GET", "/api/audit/verify", "")
	if got := b.Text("#verify-digest"); ver["ok"] != true || got != ver["digest"] || !strings.Contains(b.Text("#verify-result"), "Chain intact") {
		t.Fatalf("verification shown %q, API %v", got, ver)
	}
	if ids := unlabelled(b); len(ids) > 0 {
		t.Errorf("controls without a label on the audit page: %v", ids)
	}
	b.Screenshot("audit-all")

	// Filters: only rejected uploads of acme; the export downloads them as CSV.
	b.Run("filter audit", chromedp.SetValue("#audit-org", "acme", q), chromedp.SetValue("#audit-type", "license.rejected", q),
		chromedp.Click(`#audit-filter button[type="submit"]`, q))
	b.WaitFor("filtered audit", `location.search.includes('type=license.rejected') && document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	var types []string
	b.Eval(`[...document.querySelectorAll('#audit-list li')].map(li => li.dataset.type + '@' + li.dataset.org)`, &types)
	if !slices.Equal(types, []string{"license.rejected@acme", "license.rejected@acme"}) {
		t.Fatalf("filtered audit: %v", types)
	}
	downloads := t.TempDir()
	b.Run("allow downloads", browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads))
	b.Run("export CSV", chromedp.Click("#export-csv", q))
	csvPath := filepath.Join(downloads, "audit-acme.csv")
	var csv []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if data, err := os.ReadFile(csvPath); err == nil && strings.Count(string(data), "\n") >= 3 {
			csv = data
			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir(downloads)
			t.Fatalf("no CSV download in %s: %v", downloads, ents)
		}
	}
	lines := strings.Split(strings.TrimRight(string(csv), "\r\n"), "\n")
	if len(lines) != 3 || strings.TrimSpace(lines[0]) != "seq,event_id,subject,org,type,actor_kind,actor_id,at,envelope,hash,prev_hash" ||
		!strings.Contains(lines[1], ",acme,license.rejected,operator,") || !strings.Contains(lines[2], ",acme,license.rejected,operator,") {
		t.Fatalf("CSV export: %q", csv)
	}
	b.Screenshot("audit-filtered")

	// The signed checkpoint the page shows is one the API serves, and a
	// record downloaded with its proof verifies offline.
	b.WaitFor("the checkpoint shown", `document.querySelector('#checkpoint-size') !== null`, 20*time.Second)
	shownSize := b.Text("#checkpoint-size")
	var shownNote, vkey string
	b.Eval(`document.querySelector('#checkpoint-note').textContent`, &shownNote)
	b.Eval(`document.querySelector('#checkpoint-key').textContent`, &vkey)
	if code, body := l.get(l.token, "/api/audit/checkpoint?size="+shownSize); code != 200 || string(body) != shownNote {
		t.Fatalf("the page shows checkpoint %q (size %s), the API: %d %q", shownNote, shownSize, code, body)
	}
	b.Run("download a record with its proof", chromedp.Click(`#audit-list li button.ev-proof`, q))
	var firstSeq string
	b.Eval(`document.querySelector('#audit-list li').dataset.seq`, &firstSeq)
	proofPath := filepath.Join(downloads, "audit-record-"+firstSeq+"-proof.json")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if data, err := os.ReadFile(proofPath); err == nil && json.Valid(data) {
			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir(downloads)
			t.Fatalf("no proof download in %s: %v", downloads, ents)
		}
	}
	if code, out, errOut := cliRun(t, "", "audit", "verify-proof", proofPath, "--key", vkey); code != 0 || !strings.HasPrefix(out, "ok seq="+firstSeq+" ") {
		t.Fatalf("the downloaded proof: %d %q %q", code, out, errOut)
	}

	// Date range (UTC days, both ends included): the rejections' own day
	// lists them, the next day does not; the page agrees with the API.
	rejected := auditRecords(t, l, "org=acme&type=license.rejected")
	day, _ := time.Parse(time.DateOnly, rejected[0]["at"].(string)[:10])
	to := day.AddDate(0, 0, 1)
	for _, since := range []time.Time{to, day} {
		from := since.Format(time.DateOnly)
		want := len(auditRecords(t, l, "org=acme&type=license.rejected&since="+from+"T00:00:00Z&until="+to.AddDate(0, 0, 1).Format(time.DateOnly)+"T00:00:00Z"))
		b.Run("since "+from, chromedp.SetValue("#audit-since", from, q), chromedp.SetValue("#audit-until", to.Format(time.DateOnly), q),
			chromedp.Click(`#audit-filter button[type="submit"]`, q))
		b.WaitFor("audit since "+from, `location.search.includes('since=`+from+`') && !document.querySelector('#audit-summary').textContent.startsWith('Loading')`, 20*time.Second)
		var n int
		b.Eval(`document.querySelectorAll('#audit-list li').length`, &n)
		if n != want || (since == day && n < 2) {
			t.Fatalf("audit from %s to %s: %d events, the API has %d", from, to.Format(time.DateOnly), n, want)
		}
	}

	// Phone width: nothing wider than the screen.
	b.Run("phone", chromedp.EmulateViewport(390, 844))
	openLicense(b, l.url, "acme")
	var overflow bool
	b.Eval(`document.documentElement.scrollWidth > window.innerWidth`, &overflow)
	if overflow {
		t.Errorf("the license page is wider than a phone screen")
	}
	b.Screenshot("phone-license")
	b.Run("laptop", chromedp.EmulateViewport(1280, 900))

	// An org admin sees its own org only: no organizations page, its own audit, no chain verification.
	b.Run("sign out", chromedp.Click("#sign-out", q), chromedp.WaitVisible("#signin-token", q))
	signIn(b, l.url, acmeAdmin)
	b.WaitFor("acme's license", `document.querySelector('#lic-org').textContent === 'acme' && document.querySelector('#lic-badge').textContent === 'Active'`, 20*time.Second)
	if nav := b.Texts("#nav li:not([hidden]) a"); !slices.Equal(nav, []string{"Settings → License", "Audit history"}) {
		t.Fatalf("org admin navigation: %q", nav)
	}
	b.Run("org admin audit", chromedp.Navigate(l.url+"/ui/audit/"))
	b.WaitFor("org admin audit list", `document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	var orgs []string
	b.Eval(`[...new Set([...document.querySelectorAll('#audit-list li')].map(li => li.dataset.org))]`, &orgs)
	var verifyHidden bool
	b.Eval(`document.querySelector('#verify-panel').hidden`, &verifyHidden)
	if !slices.Equal(orgs, []string{"acme"}) || !verifyHidden {
		t.Fatalf("org admin audit: orgs %v, verify hidden %v", orgs, verifyHidden)
	}
	b.Screenshot("org-admin-audit")

	// An auditor reads the audit history of every org, verification included, and nothing else.
	b.Run("sign out", chromedp.Click("#sign-out", q), chromedp.WaitVisible("#signin-token", q))
	signIn(b, l.url, auditor)
	b.WaitFor("auditor's audit page", `location.pathname === '/ui/audit/' && document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	b.WaitFor("auditor's verification", `document.querySelector('#verify-result p[data-ok="true"]')`, 20*time.Second)
	if nav := b.Texts("#nav li:not([hidden]) a"); !slices.Equal(nav, []string{"Audit history"}) {
		t.Fatalf("auditor navigation: %q", nav)
	}
	var n int
	b.Eval(`document.querySelectorAll('#audit-list li').length`, &n)
	if n != len(auditRecords(t, l, "")) {
		t.Fatalf("auditor sees %d events", n)
	}
	b.Run("auditor opens the license page", chromedp.Navigate(l.url+"/ui/license/?org=acme"))
	if got := b.Text("#home-title"); got != "Not available with this token" {
		t.Fatalf("auditor on the license page: %q", got)
	}

	// An auditor of acme verifies acme's records, and is shown no digest.
	acmeAuditor := createTokenOn(t, l.url, filepath.Join(l.cmd.DataDir, "tokens"), "--role", "auditor", "--org", "acme", "--name", "acme-audit")
	b.Run("sign out", chromedp.Click("#sign-out", q), chromedp.WaitVisible("#signin-token", q))
	signIn(b, l.url, acmeAuditor)
	b.WaitFor("acme auditor's verification", `document.querySelector('#verify-result p[data-ok="true"]')`, 20*time.Second)
	var digestShown bool
	b.Eval(`document.querySelector('#verify-digest') !== null`, &digestShown)
	if got := b.Text("#verify-result"); !strings.HasPrefix(got, "Records of acme intact.") || digestShown {
		t.Fatalf("acme auditor's verification: %q, digest shown %v", got, digestShown)
	}
	b.Screenshot("acme-auditor-verification")

	for _, e := range b.Errors() {
		if strings.Contains(e, "Content Security Policy") || strings.HasPrefix(e, "exception:") {
			t.Errorf("page error: %s", e)
		} else {
			t.Logf("page log: %s", e) // the refused sign-in's 401
		}
	}
}

func equalViews(a, b licenseView) bool {
	return a.Badge == b.Badge && a.BadgeStatus == b.BadgeStatus && a.Customer == b.Customer && a.Tier == b.Tier &&
		a.Users == b.Users && a.Products == b.Products && a.LicenseID == b.LicenseID && slices.Equal(a.Features, b.Features)
}

// orgRow is one row of the organizations table.
type orgRow struct{ Org, Badge, Class string }

func orgsOf(rows []orgRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.Org)
	}
	return out
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// waitAudit waits until the audit trail has an event matching query.
func waitAudit(t *testing.T, l *ledgerProc, query string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); len(auditRecords(t, l, query)) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for %s", query)
		}
	}
}

// seatView is the seat block of Settings → License.
type seatView struct {
	Shown                             bool
	State, Count, SeatState, Reported string
	Enforcement                       string
	Refused                           bool
	Meter                             bool // the bar is shown
	Role, Min, Max, Now, ValueText    string
	Width, Fill                       string // the bar's filled share (of 100) and its colour
}

func readSeats(b *browsertest.Browser) seatView {
	var v seatView
	b.Eval(`(() => {
		const box = document.getElementById('lic-seats'), m = document.getElementById('seat-meter');
		const f = document.getElementById('seat-fill'), st = document.getElementById('seat-state');
		const enf = document.getElementById('seat-enforcement');
		return {Shown: !box.hidden, State: box.dataset.state || '', Count: document.getElementById('seat-count').textContent,
			SeatState: st.hidden ? '' : st.textContent, Reported: document.getElementById('seat-reported').textContent,
			Enforcement: enf.hidden ? '' : enf.textContent, Refused: enf.classList.contains('refused'),
			Meter: !m.hidden && m.getBoundingClientRect().width > 0, Role: m.getAttribute('role') || '',
			Min: m.getAttribute('aria-valuemin') || '', Max: m.getAttribute('aria-valuemax') || '',
			Now: m.getAttribute('aria-valuenow') || '', ValueText: m.getAttribute('aria-valuetext') || '',
			Width: f.getAttribute('width'), Fill: getComputedStyle(f).fill};
	})()`, &v)
	return v
}

// seatCell is one org's Seats cell in the organizations list.
type seatCell struct{ Org, Text, State, Tag string }

func readSeatCells(b *browsertest.Browser) []seatCell {
	var cells []seatCell
	b.Eval(`[...document.querySelectorAll('#orgs-body tr')].map(r => {
		const c = r.querySelector('td.seats-cell'), tag = c.querySelector('.over-tag, .near-tag');
		return {Org: r.dataset.org, Text: c.querySelector('.seat-num').textContent, State: c.dataset.seats, Tag: tag ? tag.textContent : ''};
	})`, &cells)
	return cells
}

// Seats in a real browser: the license page's seat bar in each state
// (no usage reported, under, near and at the limit, over it, unlimited,
// usage without a license), what seat enforcement means for the org, the
// install's seat enforcement set from the page, and the organizations
// list's Seats column and over-limit filter. Every state is set up through
// the API (licenses with users_limit, PUT /api/usage) and screenshotted.
func TestWebUISeatsInBrowser(t *testing.T) {
	l, acmeAdmin, _ := uiLedger(t)
	b := browsertest.New(t, 1280, 900, 3*time.Minute)

	upload := func(org, id string, limit int) {
		t.Helper()
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["customer"], p["license_id"], p["users_limit"] = org, org+" Inc", id, limit
			p["expires"] = future(365 * 24 * time.Hour)
		})
		if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
	}
	reported := map[string]string{} // org -> users_reported_at, as the page should show it
	report := func(org string, users int) {
		t.Helper()
		code, m := l.call("PUT", "/api/usage?org="+org, `{"users": `+jsonNum(users)+`}`, "Content-Type", "application/json")
		if code != 200 || m["users_active"] != float64(users) {
			t.Fatalf("usage of %s: %d %v", org, code, m)
		}
		at, err := time.Parse(time.RFC3339, m["users_reported_at"].(string))
		if err != nil {
			t.Fatalf("usage of %s reported at %v", org, m["users_reported_at"])
		}
		reported[org] = "Reported " + at.UTC().Format("2006-01-02 15:04") + " UTC by the organization's platform."
	}
	upload("fresh", "0193a5b0-7e1a-7c3d-8f00-00000005ea01", 50)
	upload("calm", "0193a5b0-7e1a-7c3d-8f00-00000005ea02", 50)
	upload("acme", "0193a5b0-7e1a-7c3d-8f00-00000005ea03", 50)
	upload("full", "0193a5b0-7e1a-7c3d-8f00-00000005ea04", 50)
	upload("crowd", "0193a5b0-7e1a-7c3d-8f00-00000005ea05", 50)
	upload("packed", "0193a5b0-7e1a-7c3d-8f00-00000005ea06", 10)
	upload("open", "0193a5b0-7e1a-7c3d-8f00-00000005ea07", 0)
	report("calm", 20)
	report("acme", 46)
	report("full", 50)
	report("crowd", 57)
	report("packed", 11)
	report("open", 42)
	report("stray", 12) // usage, but no license

	signIn(b, l.url, l.token)
	b.WaitFor("license page", `location.pathname === '/ui/license/'`, 20*time.Second)
	const blue, amber, red = "rgb(29, 79, 145)", "rgb(246, 195, 67)", "rgb(179, 38, 30)"
	unreported := "The organization's platform has not reported its active users yet."
	check := func(org string, want seatView, shot string) {
		t.Helper()
		openLicense(b, l.url, org)
		got := readSeats(b)
		if got != want {
			t.Errorf("seats of %s:\n got %+v\nwant %+v", org, got, want)
		}
		if shot != "" {
			b.Screenshot(shot)
		}
	}
	bar := func(state, count, seatState, reported, max, now, valueText, width, fill string) seatView {
		return seatView{Shown: true, State: state, Count: count, SeatState: seatState, Reported: reported, Meter: true,
			Role: "meter", Min: "0", Max: max, Now: now, ValueText: valueText, Width: width, Fill: fill}
	}
	noBar := func(state, count, reported string) seatView {
		return seatView{Shown: true, State: state, Count: count, Reported: reported, Role: "meter", Min: "0", Width: "0", Fill: blue}
	}

	// Seat enforcement off (the default): the states, and nothing said about enforcement.
	if got := b.Text("#inst-seat-enforcement"); got != "off" {
		t.Fatalf("seat enforcement shown as %q", got)
	}
	check("fresh", noBar("unreported", "No usage reported · limit 50 users", unreported), "seats-unreported")
	check("calm", bar("under", "20 / 50 users", "30 seats left", reported["calm"], "50", "20",
		"20 of 50 users, 30 seats left", "40", blue), "seats-under")
	check("acme", bar("near", "46 / 50 users", "near the limit: 4 seats left", reported["acme"], "50", "46",
		"46 of 50 users, near the limit: 4 seats left", "92", amber), "seats-near")
	check("full", bar("near", "50 / 50 users", "at the limit: no seats left", reported["full"], "50", "50",
		"50 of 50 users, at the limit: no seats left", "100", amber), "seats-at-limit")
	check("crowd", bar("over", "57 / 50 users", "over by 7", reported["crowd"], "50", "50",
		"57 of 50 users, over by 7", "100", red), "seats-over")
	check("open", noBar("unlimited", "42 users · unlimited", reported["open"]), "seats-unlimited")
	check("stray", noBar("nolimit", "12 users · no license sets a limit", reported["stray"]), "")
	// The seat state is in words, not colour only: the over-limit words are red on white, the near ones dark on amber.
	var tag string
	openLicense(b, l.url, "crowd")
	b.Eval(`(() => { const s = getComputedStyle(document.getElementById('seat-state')); return s.backgroundColor + ' ' + s.color; })()`, &tag)
	if tag != red+" rgb(255, 255, 255)" {
		t.Errorf("over-limit words shown in %s", tag)
	}
	if ids := unlabelled(b); len(ids) > 0 {
		t.Errorf("controls without a label on the license page: %v", ids)
	}

	// The operator sets hard seat enforcement on the page: an org at or over
	// its limit is told that new users are refused; one under it, from when.
	b.Run("seat enforcement hard", chromedp.SetValue("#seat-enforcement-mode", "hard", q), chromedp.Click(`#seat-enforcement-form button`, q))
	b.WaitFor("seat enforcement set", `document.querySelector('#inst-seat-enforcement').textContent === 'hard'`, 20*time.Second)
	if msg := b.Text("#seat-enforcement-result"); msg != "Seat enforcement is now hard." {
		t.Fatalf("seat enforcement answer %q", msg)
	}
	if got := b.Text("#inst-seat-note"); got != "(new users past the limit are refused)" {
		t.Errorf("seat enforcement explained as %q", got)
	}
	if _, inst := l.call("GET", "/api/install", ""); inst["seat_enforcement"] != "hard" {
		t.Fatalf("seat enforcement after the page set it: %v", inst)
	}
	hardOver := bar("over", "57 / 50 users", "over by 7", reported["crowd"], "50", "50", "57 of 50 users, over by 7", "100", red)
	hardOver.Enforcement, hardOver.Refused = "Seat enforcement is hard: the limit is reached, so new users are refused.", true
	b.WaitFor("crowd under hard enforcement", `!document.querySelector('#seat-enforcement').hidden`, 20*time.Second)
	check("crowd", hardOver, "seats-over-hard")
	hardFull := bar("near", "50 / 50 users", "at the limit: no seats left", reported["full"], "50", "50",
		"50 of 50 users, at the limit: no seats left", "100", amber)
	hardFull.Enforcement, hardFull.Refused = "Seat enforcement is hard: the limit is reached, so new users are refused.", true
	check("full", hardFull, "")
	hardCalm := bar("under", "20 / 50 users", "30 seats left", reported["calm"], "50", "20", "20 of 50 users, 30 seats left", "40", blue)
	hardCalm.Enforcement = "Seat enforcement is hard: once 50 users are active, new users are refused."
	check("calm", hardCalm, "")
	hardOpen := noBar("unlimited", "42 users · unlimited", reported["open"])
	hardOpen.Enforcement = "Seat enforcement is hard: this license sets no user limit, so no one is refused."
	check("open", hardOpen, "")

	// Soft: admitted, with a warning.
	if code, m := l.call("PUT", "/api/seat-enforcement", `{"mode":"soft"}`, "Content-Type", "application/json"); code != 200 || m["mode"] != "soft" {
		t.Fatalf("seat enforcement soft: %d %v", code, m)
	}
	softNear := bar("near", "46 / 50 users", "near the limit: 4 seats left", reported["acme"], "50", "46",
		"46 of 50 users, near the limit: 4 seats left", "92", amber)
	softNear.Enforcement = "Seat enforcement is soft: past 50 active users, new users are admitted with a warning."
	check("acme", softNear, "")
	softOver := hardOver
	softOver.Enforcement, softOver.Refused = "Seat enforcement is soft: the limit is reached; new users are still admitted, with a warning.", false
	check("crowd", softOver, "seats-over-soft")

	// A new report shows on a reload: calm goes over its limit.
	report("calm", 51)
	calmOver := bar("over", "51 / 50 users", "over by 1", reported["calm"], "50", "50", "51 of 50 users, over by 1", "100", red)
	calmOver.Enforcement = softOver.Enforcement
	check("calm", calmOver, "")
	report("calm", 20)

	// Organizations: the Seats column in every state, and the over-limit filter.
	b.Run("organizations", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("org rows", `document.querySelectorAll('#orgs-body tr').length === 9`, 20*time.Second)
	wantCells := []seatCell{
		{"_instance", "—", "unreported", ""}, {"acme", "46 / 50", "near", "near limit"}, {"calm", "20 / 50", "under", ""},
		{"crowd", "57 / 50", "over", "over by 7"}, {"fresh", "—", "unreported", ""}, {"full", "50 / 50", "near", "at limit"},
		{"open", "42 / ∞", "unlimited", ""}, {"packed", "11 / 10", "over", "over by 1"}, {"stray", "12 / —", "nolimit", ""},
	}
	if got := readSeatCells(b); !slices.Equal(got, wantCells) {
		t.Fatalf("seats column:\n got %v\nwant %v", got, wantCells)
	}
	if got := b.Text("#orgs-summary"); !strings.HasSuffix(got, "; 2 over their seat limit.") {
		t.Errorf("organizations summary %q", got)
	}
	if ids := unlabelled(b); len(ids) > 0 {
		t.Errorf("controls without a label on the organizations page: %v", ids)
	}
	b.Screenshot("organizations-seats")
	b.Run("sort by seats", chromedp.Click(`#orgs-table button[data-sort="seats"]`, q))
	if order := orgsOfCells(readSeatCells(b)); !slices.Equal(order, []string{"_instance", "fresh", "open", "stray", "calm", "acme", "full", "packed", "crowd"}) {
		t.Fatalf("sorted by seats: %v", order)
	}
	b.Run("over limit only", chromedp.Click("#orgs-over", q))
	if order := orgsOfCells(readSeatCells(b)); !slices.Equal(order, []string{"packed", "crowd"}) {
		t.Fatalf("over the seat limit: %v", order)
	}
	if got := b.Text("#orgs-summary"); !strings.HasPrefix(got, "Showing 2 of 9 organizations;") {
		t.Errorf("summary with the over-limit filter %q", got)
	}
	b.Screenshot("organizations-over-limit")
	b.Run("with a text filter too", chromedp.SendKeys("#orgs-q", "cro", q))
	if order := orgsOfCells(readSeatCells(b)); !slices.Equal(order, []string{"crowd"}) {
		t.Fatalf("over the seat limit, filtered by cro: %v", order)
	}
	b.Run("every org again", chromedp.Click("#orgs-over", q),
		chromedp.Evaluate(`(() => { const i = document.querySelector('#orgs-q'); i.value = ''; i.dispatchEvent(new Event('input')); })()`, nil))
	if n := len(readSeatCells(b)); n != 9 {
		t.Fatalf("without the filters: %d rows", n)
	}

	// The audit history names the seat events.
	b.Run("audit", chromedp.Navigate(l.url+"/ui/audit/?type=usage.reported&org=crowd"))
	b.WaitFor("usage events", `document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	if got := b.Texts("#audit-list li .ev-detail"); !slices.Equal(got, []string{"57 active users reported."}) {
		t.Errorf("crowd's usage events shown as %q", got)
	}

	// An org admin sees its own org's seats, and what soft enforcement means for it.
	b.Run("sign out", chromedp.Click("#sign-out", q), chromedp.WaitVisible("#signin-token", q))
	signIn(b, l.url, acmeAdmin)
	b.WaitFor("acme's seats", `document.querySelector('#lic-org').textContent === 'acme' && !document.querySelector('#lic-seats').hidden`, 20*time.Second)
	if got := readSeats(b); got != softNear {
		t.Errorf("acme admin's seats:\n got %+v\nwant %+v", got, softNear)
	}
	b.Screenshot("seats-org-admin")

	for _, e := range b.Errors() {
		if strings.Contains(e, "Content Security Policy") || strings.HasPrefix(e, "exception:") {
			t.Errorf("page error: %s", e)
		} else {
			t.Logf("page log: %s", e)
		}
	}
}

func orgsOfCells(cells []seatCell) []string {
	out := []string{}
	for _, c := range cells {
		out = append(out, c.Org)
	}
	return out
}
