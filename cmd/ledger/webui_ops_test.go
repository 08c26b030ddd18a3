package main

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/licenseledger/ledger/internal/testenv/browsertest"
)

// auditPageView is what the audit page lists, in its order.
func auditPageView(b *browsertest.Browser) (seqs []string, newerOff, olderOff bool) {
	b.Eval(`[...document.querySelectorAll('#audit-list li')].map(li => li.dataset.seq)`, &seqs)
	b.Eval(`document.querySelector('#audit-pager-top button[data-go="newer"]').disabled`, &newerOff)
	b.Eval(`document.querySelector('#audit-pager-top button[data-go="older"]').disabled`, &olderOff)
	return seqs, newerOff, olderOff
}

// auditData is an audit record's envelope's data.
func auditData(t *testing.T, rec map[string]any) map[string]any {
	t.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(rec["envelope"].(string)), &env); err != nil {
		t.Fatalf("envelope of seq %v: %v", rec["seq"], err)
	}
	return env.Data
}

// The operator's actions in a real browser: days in words for expired and
// grace, a mistyped org said as such, Remove and Revoke with a confirmation
// naming the org and the license (cancel changes nothing), the audit
// history newest first with pages both ways, the link from an event to its
// org, an org's history, and no actions for an org admin (whom the API
// refuses anyway).
func TestWebUIOperatorActionsInBrowser(t *testing.T) {
	const day = 24 * time.Hour
	var shift atomic.Int64 // the ledger's clock against the real one
	l, acmeAdmin, _ := uiLedgerWith(t, func(c *serveCmd) {
		c.now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	})
	b := browsertest.New(t, 1280, 900, 4*time.Minute)
	upload := func(org, id string, mod func(map[string]any)) { t.Helper(); l.uploadAs(t, org, id, mod) }
	const (
		acmeID     = "0193a5b0-7e1a-7c3d-8f00-0000000ac001"
		acmeID2    = "0193a5b0-7e1a-7c3d-8f00-0000000ac002"
		globexID   = "0193a5b0-7e1a-7c3d-8f00-0000000c10be"
		gracefulID = "0193a5b0-7e1a-7c3d-8f00-0000000c4ace"
		lapsedID   = "0193a5b0-7e1a-7c3d-8f00-0000000c1a55"
	)
	upload("acme", acmeID, func(p map[string]any) { p["expires"] = future(200 * day) })
	upload("globex", globexID, func(p map[string]any) { p["expires"] = future(300 * day) })
	// In grace: expired 2 days 23 hours ago, 7 days of grace, so 4 left.
	upload("graceful", gracefulID, func(p map[string]any) { p["expires"], p["grace_days"] = future(-3*day+time.Hour), 7 })
	// Expired 3 days 1 hour ago without grace: uploaded while the ledger's
	// clock was ten days behind, when it was still valid.
	shift.Store(int64(-10 * day))
	upload("lapsed", lapsedID, func(p map[string]any) { p["expires"], p["grace_days"] = future(-3*day-time.Hour), 0 })
	shift.Store(0)
	// Rejected uploads of an org that has no license event: noise in the trail.
	for range 4 {
		if code, _ := l.call("POST", "/api/license?org=noise", "hfl1.not-a-license"); code != 400 {
			t.Fatalf("a malformed upload answered %d", code)
		}
	}
	waitAudit(t, l, "org=lapsed&type=license.expired")
	waitAudit(t, l, "org=graceful&type=license.grace_started")

	signIn(b, l.url, l.token)
	b.WaitFor("license page", `location.pathname === '/ui/license/'`, 20*time.Second)

	// A mistyped org is said to be unknown, not shown as merely unlicensed.
	if v := openLicense(b, l.url, "acmee"); v.Badge != "Unknown organization" || v.BadgeStatus != "missing" {
		t.Fatalf("acmee: %+v", v)
	}
	if note := b.Text("#lic-note"); !strings.HasPrefix(note, `No organization named "acmee" has any license event here: check the spelling.`) {
		t.Fatalf("acmee's note: %q", note)
	}
	var opsHidden bool
	b.Eval(`document.querySelector('#ops-panel').hidden`, &opsHidden)
	if !opsHidden {
		t.Fatalf("actions offered for an org without a license")
	}
	b.Screenshot("unknown-org")
	// An org with rejected uploads only has no license event either.
	if v := openLicense(b, l.url, "noise"); v.Badge != "Unknown organization" {
		t.Fatalf("noise: %+v", v)
	}

	// Days in words, by status.
	if v := openLicense(b, l.url, "lapsed"); v.Badge != "Expired" || !strings.HasSuffix(v.Expires, " — expired 3 days ago") {
		t.Fatalf("lapsed: %+v", v)
	}
	b.Screenshot("expired-3-days-ago")
	if v := openLicense(b, l.url, "graceful"); v.Badge != "Grace Period" || !strings.HasSuffix(v.Expires, " — in grace: 4 days of grace left") {
		t.Fatalf("graceful: %+v", v)
	}
	b.Screenshot("in-grace-4-days-left")
	b.Run("organizations", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("org rows", `document.querySelectorAll('#orgs-body tr').length >= 4`, 20*time.Second)
	var days map[string]string
	b.Eval(`Object.fromEntries([...document.querySelectorAll('#orgs-body tr')].map(r => [r.dataset.org, r.querySelector('td.days').textContent]))`, &days)
	if days["lapsed"] != "expired 3 days ago" || days["graceful"] != "in grace: 4 days of grace left" ||
		days["acme"] != "199 days left" || days["globex"] != "299 days left" || days["_instance"] != "—" {
		t.Fatalf("days left column: %v", days)
	}
	b.Screenshot("orgs-days-in-words")

	// Remove: the confirmation names the org and the license; cancelling changes nothing.
	openLicense(b, l.url, "acme")
	if got := b.Text("#ops-license"); got != acmeID {
		t.Fatalf("actions for license %q", got)
	}
	_, before := l.call("GET", "/api/license?org=acme", "")
	confirm := func(button string) (title, text, action string) {
		t.Helper()
		b.Run("press "+button, chromedp.Click(button, q))
		b.WaitFor("the confirmation", `document.querySelector('#confirm-dialog').open`, 20*time.Second)
		return b.Text("#confirm-title"), b.Text("#confirm-text"), b.Text("#confirm-ok")
	}
	title, text, action := confirm("#ops-remove")
	if title != "Remove the license of acme?" || !strings.Contains(text, "License "+acmeID+" will be removed from acme.") || action != "Remove license "+acmeID {
		t.Fatalf("remove confirmation: %q %q %q", title, text, action)
	}
	b.Screenshot("remove-confirmation")
	b.Run("cancel", chromedp.Click("#confirm-cancel", q))
	b.WaitFor("cancelled", `!document.querySelector('#confirm-dialog').open && document.querySelector('#ops-result .msg')`, 20*time.Second)
	if msg := b.Text("#ops-result"); msg != "Cancelled: the license of acme was not removed." {
		t.Fatalf("after cancel: %q", msg)
	}
	if _, after := l.call("GET", "/api/license?org=acme", ""); after["seq"] != before["seq"] || after["license_id"] != acmeID {
		t.Fatalf("cancel changed acme: %v -> %v", before, after)
	}
	if recs := auditRecords(t, l, "org=acme&type=license.removed"); len(recs) != 0 {
		t.Fatalf("cancel recorded %v", recs)
	}
	// Escape cancels too.
	confirm("#ops-remove")
	b.Run("escape", chromedp.KeyEvent("\x1b"))
	b.WaitFor("closed by Escape", `!document.querySelector('#confirm-dialog').open`, 20*time.Second)
	if recs := auditRecords(t, l, "org=acme&type=license.removed"); len(recs) != 0 {
		t.Fatalf("Escape recorded %v", recs)
	}
	confirm("#ops-remove")
	b.Run("confirm removal", chromedp.Click("#confirm-ok", q))
	b.WaitFor("removed", `document.querySelector('#ops-result').textContent.includes('removed from acme')`, 20*time.Second)
	if v := readLicense(b); v.Badge != "No License" || v.LicenseID != "—" {
		t.Fatalf("acme after removal: %+v", v)
	}
	if note := b.Text("#lic-note"); !strings.HasPrefix(note, "acme has no license") {
		t.Fatalf("acme's note after removal: %q", note)
	}
	if msg := b.Text("#ops-result"); msg != "License "+acmeID+" removed from acme. Status now: No License." {
		t.Fatalf("removal answer %q", msg)
	}
	removed := auditRecords(t, l, "org=acme&type=license.removed")
	if len(removed) != 1 || auditData(t, removed[0])["license_id"] != acmeID {
		t.Fatalf("license.removed events: %v", removed)
	}
	if _, st := l.call("GET", "/api/license?org=acme", ""); st["status"] != "missing" || st["license_id"] != nil {
		t.Fatalf("acme after removal, from the API: %v", st)
	}
	b.Screenshot("removed")

	// Revoke with a note: too long a note is refused before asking; then
	// the note is in the confirmation and in the audit event.
	openLicense(b, l.url, "globex")
	b.Run("long note", chromedp.SetValue("#ops-note", strings.Repeat("é", 513), q), chromedp.Click("#ops-invalidate", q))
	b.WaitFor("note refused", `document.querySelector('#ops-result .msg.error')`, 20*time.Second)
	var open bool
	b.Eval(`document.querySelector('#confirm-dialog').open`, &open)
	if msg := b.Text("#ops-result"); open || !strings.Contains(msg, "longer than 1024 bytes") {
		t.Fatalf("a 1026-byte note: dialog open %v, %q", open, msg)
	}
	const note = "refunded — ticket 4711"
	b.Run("note", chromedp.SetValue("#ops-note", note, q))
	title, text, action = confirm("#ops-invalidate")
	if title != "Revoke the license of globex?" || !strings.Contains(text, "License "+globexID+" of globex will be revoked for good") ||
		!strings.Contains(text, `Note recorded: "`+note+`"`) || action != "Revoke license "+globexID {
		t.Fatalf("revoke confirmation: %q %q %q", title, text, action)
	}
	var stale string
	b.Eval(`document.querySelector('#ops-result').textContent`, &stale)
	if stale != "" {
		t.Errorf("the refusal of the long note still shown with the confirmation: %q", stale)
	}
	b.Screenshot("revoke-confirmation")
	b.Run("confirm revocation", chromedp.Click("#confirm-ok", q))
	b.WaitFor("revoked", `document.querySelector('#ops-result').textContent.includes('of globex revoked')`, 20*time.Second)
	if v := readLicense(b); v.Badge != "Invalid: revoked" || v.BadgeStatus != "invalid" || v.LicenseID != globexID {
		t.Fatalf("globex after revocation: %+v", v)
	}
	var invalidateHidden bool
	b.Eval(`document.querySelector('#ops-invalidate-form').hidden && !document.querySelector('#ops-panel').hidden`, &invalidateHidden)
	if !invalidateHidden {
		t.Errorf("a revoked license is offered for revocation again, or no more for removal")
	}
	inv := auditRecords(t, l, "org=globex&type=license.invalidated")
	if len(inv) != 1 || auditData(t, inv[0])["note"] != note || auditData(t, inv[0])["license_id"] != globexID {
		t.Fatalf("license.invalidated events: %v", inv)
	}
	if _, st := l.call("GET", "/api/license?org=globex", ""); st["status"] != "invalid" || st["reason"] != "revoked" {
		t.Fatalf("globex after revocation, from the API: %v", st)
	}
	b.Screenshot("revoked")

	// The audit history: newest first, five a page, both ways.
	all := auditRecords(t, l, "")
	if len(all) < 12 {
		t.Fatalf("only %d events: not enough for three pages", len(all))
	}
	var newest []string
	for i := len(all) - 1; i >= 0; i-- {
		newest = append(newest, jsonNum(all[i]["seq"]))
	}
	b.Run("audit", chromedp.Navigate(l.url+"/ui/audit/?limit=5"))
	b.WaitFor("audit page", `document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	page := func(what string, want []string, newerOff, olderOff bool) {
		t.Helper()
		seqs, nOff, oOff := auditPageView(b)
		if !slices.Equal(seqs, want) || nOff != newerOff || oOff != olderOff {
			t.Fatalf("%s: seqs %v (newer off %v, older off %v), want %v (%v, %v)", what, seqs, nOff, oOff, want, newerOff, olderOff)
		}
	}
	page("newest page", newest[:5], true, false)
	if s := b.Text("#audit-summary"); !strings.HasPrefix(s, "Showing 5 events, newest first: seq "+newest[0]+" down to "+newest[4]) ||
		!strings.Contains(s, "These are the newest; older ones on the next.") {
		t.Fatalf("summary %q", s)
	}
	b.Screenshot("audit-newest-first")
	goPage := func(dir string) {
		t.Helper()
		b.Run(dir, chromedp.Evaluate(`document.querySelector('#audit-summary').textContent = ''`, nil),
			chromedp.Click(`#audit-pager-bottom button[data-go="`+dir+`"]`, q))
		b.WaitFor(dir+" page", `document.querySelector('#audit-summary').textContent.startsWith('Showing')`, 20*time.Second)
	}
	goPage("older")
	page("second page", newest[5:10], false, false)
	goPage("older")
	page("third page", newest[10:min(15, len(newest))], false, len(newest) <= 15)
	b.Screenshot("audit-older-page")
	goPage("newer")
	page("back to the second", newest[5:10], false, false)
	goPage("newer")
	page("back to the newest", newest[:5], true, false)
	goPage("older")
	b.Run("newest", chromedp.Click(`#audit-pager-top button[data-go="newest"]`, q))
	b.WaitFor("newest again", `document.querySelector('#audit-list li').dataset.seq === '`+newest[0]+`'`, 20*time.Second)

	// From an event to its org: the revocation's org link opens globex's license.
	var href string
	b.Eval(`document.querySelector('#audit-list li[data-type="license.invalidated"] a.ev-org').getAttribute('href')`, &href)
	if href != "/ui/license/?org=globex" {
		t.Fatalf("the revocation's org link: %q", href)
	}
	b.Run("follow the org link", chromedp.Click(`#audit-list li[data-type="license.invalidated"] a.ev-org`, q))
	b.WaitFor("globex's license", `location.search === '?org=globex' && document.querySelector('#lic-org').textContent === 'globex' && !document.querySelector('#license-view').hidden`, 20*time.Second)

	// …whose history is the per-org view: its events only, newest first, its state on top.
	b.Run("globex's history", chromedp.Click("#lic-history", q))
	b.WaitFor("globex's history", `location.pathname === '/ui/audit/' && document.querySelector('#audit-summary').textContent.startsWith('Showing') && !document.querySelector('#org-history-badge').hidden`, 20*time.Second)
	globex := auditRecords(t, l, "org=globex")
	var wantG []string
	for i := len(globex) - 1; i >= 0; i-- {
		wantG = append(wantG, jsonNum(globex[i]["seq"]))
	}
	page("globex's history", wantG, true, true)
	if got := b.Text("#audit-title"); got != "Audit history of globex" {
		t.Fatalf("title %q", got)
	}
	if got := b.Text("#org-history-badge"); got != "Invalid: revoked" {
		t.Fatalf("history badge %q", got)
	}
	if got := b.Texts("#audit-list li .ev-detail")[0]; got != "License "+globexID+" revoked for good: "+note {
		t.Fatalf("newest globex event: %q", got)
	}
	b.Screenshot("org-history")

	// An org admin is offered no action, and the API refuses it anyway.
	upload("acme", acmeID2, func(p map[string]any) { p["expires"] = future(100 * day) })
	b.Run("sign out", chromedp.Click("#sign-out", q), chromedp.WaitVisible("#signin-token", q))
	signIn(b, l.url, acmeAdmin)
	b.WaitFor("acme's license", `document.querySelector('#lic-org').textContent === 'acme' && document.querySelector('#lic-badge').textContent === 'Active'`, 20*time.Second)
	b.Eval(`document.querySelector('#ops-panel').hidden`, &opsHidden)
	if !opsHidden {
		t.Fatalf("an org admin is offered the operator's actions")
	}
	b.Screenshot("org-admin-no-actions")
	if code, _, body := l.raw(acmeAdmin, "DELETE", "/api/license?org=acme", ""); code != 403 {
		t.Fatalf("an org admin's removal: %d %s", code, body)
	}
	if code, _, body := l.raw(acmeAdmin, "POST", "/api/license/invalidate?org=acme", `{"license_id":"`+acmeID2+`","note":"x"}`); code != 403 {
		t.Fatalf("an org admin's revocation: %d %s", code, body)
	}
	if _, st := l.call("GET", "/api/license?org=acme", ""); st["status"] != "valid" || st["license_id"] != acmeID2 {
		t.Fatalf("acme after the org admin's attempts: %v", st)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("page errors: %v", errs)
	}
}
