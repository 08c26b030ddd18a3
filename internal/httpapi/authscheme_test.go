package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/licenseledger/ledger/internal/httpapi"
)

// The Bearer scheme is matched whatever its case, followed by one or more
// spaces (RFC 9110 §11.1); another scheme, a glued token or two
// Authorization headers are 401.
func TestAuthorizationScheme(t *testing.T) {
	mem, _ := trail(t, 1)
	s := startAPI(t, httpapi.Config{Audit: mem})
	do := func(values ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+"/api/whoami", nil)
		for _, v := range values {
			req.Header.Add("Authorization", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer realm="ledger"` {
			t.Errorf("%q: 401 without the challenge", values)
		}
		return resp.StatusCode
	}
	for _, v := range []string{"Bearer " + tokOperator, "bearer " + tokOperator, "BEARER " + tokOperator,
		"bEaReR " + tokOperator, "Bearer    " + tokOperator, "Bearer " + tokOperator + "  "} {
		if code := do(v); code != 200 {
			t.Errorf("%q: %d, want 200", v, code)
		}
	}
	for _, v := range [][]string{{"Bearer" + tokOperator}, {"Bearerx " + tokOperator}, {"Basic " + tokOperator},
		{"Bearer"}, {"Bearer  "}, {tokOperator}, {"Bearer\t" + tokOperator}, {"Bearer " + tokOperator + "x"},
		{"Bearer " + tokOperator, "Bearer " + tokOperator}} {
		if code := do(v...); code != 401 {
			t.Errorf("%q: %d, want 401", v, code)
		}
	}
}
