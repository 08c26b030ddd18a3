package main

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/testenv/browsertest"
)

// LICENSE_EXPIRY_NOTICE_DAYS: positive days 1..365, each once, or off;
// anything else is a usage error (exit 2) naming the variable.
func TestServeExpiryNoticeDaysValidation(t *testing.T) {
	for _, v := range []string{"0", "7,7", "30,x", "366", "-1", "7d"} {
		code, _, stderr := runCmd(t, map[string]string{"LICENSE_EXPIRY_NOTICE_DAYS": v, "DATA_DIR": t.TempDir()}, "serve")
		if code != 2 || !strings.Contains(stderr, "LICENSE_EXPIRY_NOTICE_DAYS") {
			t.Errorf("%q: exit %d: %s", v, code, stderr)
		}
	}
	for _, v := range []string{"30,14,7,1", "off", "90, 1"} {
		cmd := &serveCmd{Listen: "127.0.0.1:8080", GraceDays: 7, Replicas: 1, UsageRate: 60, ExpiryNoticeDays: v}
		if err := cmd.validate(); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// bannerView is the license page's renewal banner.
type bannerView struct {
	Shown     bool
	Due, Text string
	Class     string
}

func readBanner(b *browsertest.Browser, id string) bannerView {
	var v bannerView
	b.Eval(`(() => {
		const box = document.getElementById('`+id+`');
		return {Shown: !box.hidden && box.getBoundingClientRect().height > 0, Due: box.dataset.due || '',
			Text: box.querySelector('p').textContent, Class: box.className};
	})()`, &v)
	return v
}

// The renewal banner in a real browser: on an org's license page when its
// expiry is near (within 30 days, no renewal stored) or its grace has
// begun, with the action that leads to the upload form, and gone once the
// renewal is uploaded from the page; none for a license far from expiry
// or one a pending renewal covers. The organizations list shows the orgs
// due for renewal, soonest first, each with a Renew link, and a button
// that filters the list to them.
func TestWebUIExpiryBannerInBrowser(t *testing.T) {
	l, _, _ := uiLedger(t)
	b := browsertest.New(t, 1280, 900, 3*time.Minute)
	const day = 24 * time.Hour
	upload := func(org, id string, mod func(map[string]any)) { t.Helper(); l.uploadAs(t, org, id, mod) }
	upload("farout", "0193a5b0-7e1a-7c3d-8f00-0000000ba001", func(p map[string]any) { p["expires"] = future(200 * day) })
	upload("soon", "0193a5b0-7e1a-7c3d-8f00-0000000ba002", func(p map[string]any) { p["expires"] = future(10 * day) })
	upload("renewing", "0193a5b0-7e1a-7c3d-8f00-0000000ba003", func(p map[string]any) { p["expires"] = future(10 * day) })
	upload("renewing", "0193a5b0-7e1a-7c3d-8f00-0000000ba004", func(p map[string]any) {
		p["issued_at"], p["not_before"], p["expires"] = "2026-11-20T00:00:00Z", future(9*day), future(400*day)
	})
	upload("lapsed", "0193a5b0-7e1a-7c3d-8f00-0000000ba005", func(p map[string]any) { p["expires"] = future(-day) })

	signIn(b, l.url, l.token)
	b.WaitFor("license page", `location.pathname === '/ui/license/'`, 20*time.Second)

	// The organizations list: the orgs due for renewal, soonest first.
	b.Run("organizations", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("orgs loaded", `document.querySelectorAll('#orgs-body tr').length >= 4`, 20*time.Second)
	ob := readBanner(b, "orgs-banner")
	if !ob.Shown || !strings.Contains(ob.Text, "2 organizations need a renewal: 1 in grace period, 1 expiring within 30 days") {
		t.Fatalf("organizations banner %+v", ob)
	}
	var listed []struct{ Org, Href string }
	b.Eval(`[...document.querySelectorAll('#orgs-banner-list li')].map(li => ({Org: li.dataset.org,
		Href: li.querySelector('a.renew-link').getAttribute('href')}))`, &listed)
	if len(listed) != 2 || listed[0].Org != "lapsed" || listed[1].Org != "soon" || listed[1].Href != "/ui/license/?org=soon#upload-form" {
		t.Fatalf("orgs due for renewal %+v", listed)
	}
	b.Screenshot("orgs-banner")
	b.Run("show only those", chromedp.Click("#orgs-banner-show", q))
	var rows []string
	b.Eval(`[...document.querySelectorAll('#orgs-body tr')].map(r => r.dataset.org)`, &rows)
	if !slices.Equal(rows, []string{"lapsed", "soon"}) {
		t.Fatalf("rows after Show only those: %v", rows)
	}

	// License pages: a banner for soon and lapsed, none for farout and renewing.
	for _, c := range []struct{ org, due, class, text string }{
		{"farout", "", "", ""},
		{"renewing", "", "", ""},
		{"soon", "soon", "banner banner-warn", "This license expires on "},
		{"lapsed", "grace", "banner banner-grace", ": the grace period has begun and ends on "},
	} {
		openLicense(b, l.url, c.org)
		got := readBanner(b, "lic-banner")
		if got.Shown != (c.due != "") || got.Due != c.due || (c.due != "" && (got.Class != c.class || !strings.Contains(got.Text, c.text))) {
			t.Errorf("%s: banner %+v, want due %q class %q text %q", c.org, got, c.due, c.class, c.text)
		}
		b.Screenshot("license-" + c.org)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Fatalf("browser errors: %v", errs)
	}

	// The banner's action leads to the upload form; the renewal uploaded
	// there takes the banner away.
	openLicense(b, l.url, "soon")
	b.Run("renew", chromedp.Click("#lic-renew", q))
	b.WaitFor("paste box focused", `document.activeElement && document.activeElement.id === 'upload-text'`, 10*time.Second)
	kind, msg := pasteAndUpload(b, signed(t, "k1", func(p map[string]any) {
		p["org_slug"], p["customer"], p["license_id"] = "soon", "soon Inc", "0193a5b0-7e1a-7c3d-8f00-0000000ba006"
		p["issued_at"], p["expires"] = "2026-11-20T00:00:00Z", future(365*day)
	}))
	if !strings.Contains(kind, "ok") {
		t.Fatalf("renewal: %s %q", kind, msg)
	}
	if got := readBanner(b, "lic-banner"); got.Shown {
		t.Fatalf("banner after the renewal: %+v", got)
	}
	b.Screenshot("license-soon-renewed")

	// The list again: only lapsed is due.
	b.Run("organizations again", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("orgs loaded again", `document.querySelectorAll('#orgs-body tr').length >= 4`, 20*time.Second)
	b.Eval(`[...document.querySelectorAll('#orgs-banner-list li')].map(li => li.dataset.org)`, &rows)
	if ob := readBanner(b, "orgs-banner"); !ob.Shown || !slices.Equal(rows, []string{"lapsed"}) {
		t.Fatalf("organizations banner after the renewal: %+v %v", ob, rows)
	}
	// Nothing due: no banner.
	upload("lapsed", "0193a5b0-7e1a-7c3d-8f00-0000000ba007", func(p map[string]any) {
		p["issued_at"], p["expires"] = "2026-11-20T00:00:00Z", future(365*day)
	})
	b.Run("organizations, none due", chromedp.Navigate(l.url+"/ui/orgs/"))
	b.WaitFor("orgs loaded, none due", `document.querySelectorAll('#orgs-body tr').length >= 4`, 20*time.Second)
	if ob := readBanner(b, "orgs-banner"); ob.Shown {
		t.Fatalf("organizations banner with none due: %+v", ob)
	}
	b.Screenshot("orgs-no-banner")
}

// ledger serve end to end: its scheduler appends license.expiring at the
// configured thresholds (the nearest reached), and /metrics counts the
// orgs by status and expiry, with enforcement.
func TestServeExpiryNoticesAndMetrics(t *testing.T) {
	l := startLedgerWith(t, t.TempDir(), func(c *serveCmd) {
		c.ExpiryNoticeDays = "14,3"
		var err error
		if c.noticeDays, err = ledger.ParseExpiryNoticeDays(c.ExpiryNoticeDays); err != nil {
			t.Fatal(err)
		}
	})
	const day = 24 * time.Hour
	for i, u := range []struct {
		org     string
		expires time.Duration
	}{{"farout", 200 * day}, {"soon", 10 * day}, {"lapsed", -day}} {
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["expires"] = u.org, "0193a5b0-7e1a-7c3d-8f00-0000000bb00"+strconv.Itoa(i), future(u.expires)
		})
		if code, m := l.call("POST", "/api/license?org="+u.org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", u.org, code, m)
		}
	}
	var notices []map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		notices = auditRecords(t, l, "type=license.expiring")
		if len(notices) > 0 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(1500 * time.Millisecond) // more ticks: still one notice
	notices = auditRecords(t, l, "type=license.expiring")
	if len(notices) != 1 || notices[0]["org"] != "soon" {
		t.Fatalf("notices %v", notices)
	}
	var env struct{ Data events.Expiring }
	if err := json.Unmarshal([]byte(notices[0]["envelope"].(string)), &env); err != nil || env.Data.Days != 14 ||
		env.Data.Expires.Sub(time.Now().Add(10*day)).Abs() > time.Minute {
		t.Fatalf("notice %v: %+v", err, env.Data)
	}
	for sample, want := range map[string]float64{
		`ledger_orgs{status="valid"}`: 2, `ledger_orgs{status="grace"}`: 1, `ledger_orgs{status="expired"}`: 0,
		`ledger_orgs{status="invalid"}`: 0, `ledger_orgs{status="missing"}`: 0,
		`ledger_orgs_expiring{within="7d"}`: 0, `ledger_orgs_expiring{within="30d"}`: 1, "ledger_enforcement_on": 1,
	} {
		if got := metric(t, l, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	if got := metric(t, l, "ledger_license_soonest_expiry_timestamp_seconds"); time.Unix(int64(got), 0).Sub(time.Now().Add(10*day)).Abs() > time.Minute {
		t.Errorf("soonest expiry %v", time.Unix(int64(got), 0))
	}
}
