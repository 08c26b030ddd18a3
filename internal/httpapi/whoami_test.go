package httpapi_test

import (
	"encoding/json"
	"testing"

	"github.com/licenseledger/ledger/internal/httpapi"
)

// GET /api/whoami tells each token its role, orgs and actor; no token is 401.
func TestWhoami(t *testing.T) {
	mem, _ := trail(t, 1)
	s := startAPI(t, httpapi.Config{Audit: mem})
	cases := []struct {
		tok, role, orgs, actor string
	}{
		{tokOperator, "operator", `["*"]`, `{"kind":"operator","id":"token:`},
		{tokAuditorAll, "auditor", `["*"]`, `{"kind":"auditor","id":"auditor-all"}`},
		{tokAuditorOther, "auditor", `["globex","_instance"]`, `{"kind":"auditor","id":"auditor-globex-instance"}`},
		{tokAdminAcme, "org_admin", `["acme"]`, `{"kind":"org_admin","id":"org-admin-acme"}`},
	}
	for _, c := range cases {
		a := s.get(t, c.tok, "/api/whoami")
		if a.code != 200 || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", c.role, a.code, a.body)
		}
		var got struct {
			Role  string          `json:"role"`
			Orgs  json.RawMessage `json:"orgs"`
			Actor json.RawMessage `json:"actor"`
		}
		if err := json.Unmarshal(a.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Role != c.role || string(got.Orgs) != c.orgs || len(got.Actor) < len(c.actor) || string(got.Actor[:len(c.actor)]) != c.actor {
			t.Errorf("%s: got %s", c.tok, a.body)
		}
	}
	if a := s.get(t, "", "/api/whoami"); a.code != 401 {
		t.Fatalf("no token: %d %s", a.code, a.body)
	}
}
