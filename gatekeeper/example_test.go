package gatekeeper_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/license"
)

// staticSource serves fixed org states. A gatekeeper replica gets them from
// the stream (a follow.Follower); tests and small embeddings can use a map.
type staticSource map[string]*license.OrgState

func (s staticSource) State(_ context.Context, org string, _ uint64) (own, instance *license.OrgState, err error) {
	own = s[org]
	if own == nil {
		own = license.NewOrgState(org) // no events: an empty state
	}
	instance = s[license.InstanceOrg]
	if instance == nil {
		instance = license.NewOrgState(license.InstanceOrg)
	}
	return own, instance, nil
}

func ExampleGate_Middleware() {
	// A vendor key signs a license for the org acme; the install trusts it.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	ring, err := license.NewRing(map[string]ed25519.PublicKey{"vendor-2026": pub})
	if err != nil {
		log.Fatal(err)
	}
	l, err := license.Sign(priv, "vendor-2026", []byte(`{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab",
		"customer": "Acme Corp", "org_slug": "acme", "tier": "enterprise", "features": ["sso", "chat_connector"],
		"issued_at": "2026-11-01T00:00:00Z", "expires": "2027-11-01T00:00:00Z", "users_limit": 50}`))
	if err != nil {
		log.Fatal(err)
	}
	// The states a follower folds from the stream: acme holds the license
	// (verified against the ring), enforcement is on.
	src := staticSource{
		"acme":              {Org: "acme", Seq: 2, Current: license.NewSlot(ring, "acme", "", l.Key, 7)},
		license.InstanceOrg: {Org: license.InstanceOrg, Seq: 1, Enforcement: license.EnforceOn},
	}

	rules, err := gatekeeper.ParseFeatures(strings.NewReader(`
# route                         features required
GET /reports/{id}/export        audit_export
`))
	if err != nil {
		log.Fatal(err)
	}
	clock := time.Date(2027, 10, 29, 12, 0, 0, 0, time.UTC)
	g, err := gatekeeper.New(src, gatekeeper.Config{Features: rules, Now: func() time.Time { return clock }})
	if err != nil {
		log.Fatal(err)
	}

	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "org=%s status=%s tier=%s features=%s users=%s days=%s",
			r.Header.Get("X-License-Org"), r.Header.Get("X-License-Status"), r.Header.Get("X-License-Tier"),
			r.Header.Get("X-License-Features"), r.Header.Get("X-License-Users-Limit"), r.Header.Get("X-License-Days-Remaining"))
	})
	h := g.Middleware(app)

	do := func(org, path string) {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = "127.0.0.1:50000" // a reverse proxy on this host sets the org header
		r.Header.Set("X-Org-Slug", org)
		r.Header.Set("X-License-Status", "valid") // forged: stripped
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		line := fmt.Sprint(w.Code, " ", strings.TrimSpace(w.Body.String()), " ", w.Header().Get("X-License-Warning"))
		fmt.Println(strings.TrimSpace(line))
	}
	do("acme", "/projects")
	do("acme", "/reports/7/export") // needs audit_export
	do("globex", "/projects")       // no license
	do("globex", "/api/license")    // allowlisted: globex can upload one
	clock = clock.AddDate(0, 0, 5)  // past expiry, in the 7 days of grace
	do("acme", "/projects")

	// Output:
	// 200 org=acme status=valid tier=enterprise features=chat_connector,sso users=50 days=2
	// 403 {"error":"feature_not_licensed","message":"the org's license does not include audit_export, which this route needs","org":"acme","reason":null}
	// 403 {"error":"license_missing","message":"the org holds no license","org":"globex","reason":null}
	// 200 org=globex status=missing tier= features= users= days=
	// 200 org=acme status=grace tier=enterprise features=chat_connector,sso users=50 days=-3 grace; ends=2027-11-08T00:00:00Z
}
