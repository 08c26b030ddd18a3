package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recordingTB keeps what a Validator reports.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

const statusJSON = `{"org":"acme","status":"missing","reason":null,"resolved_from":"none","license_id":null,"customer":null,"tier":null,"products":null,"features":null,"issued_at":null,"not_before":null,"expires":null,"grace_ends":null,"days_remaining":null,"users_limit":null,"users_active":null,"users_reported_at":null,"enforcement":"auto","seq":0,"pending":null}`

// The validator passes what the document describes and reports each kind
// of mismatch: the checks can fail.
func TestValidatorChecksCanFail(t *testing.T) {
	answer := func(code int, ctype, body string, hdr ...string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			if ctype != "" {
				w.Header().Set("Content-Type", ctype)
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		})
	}
	const tok = "Bearer t0k3n"
	for _, c := range []struct {
		name, method, path, auth, body string
		h                              http.Handler
		want                           string // "" = no report
	}{
		{"status payload", "GET", "/api/license?org=acme", tok, "", answer(200, "application/json", statusJSON), ""},
		{"HEAD as GET", "HEAD", "/api/license?org=acme", tok, "", answer(200, "application/json", ""), ""},
		{"a key missing", "GET", "/api/license?org=acme", tok, "", answer(200, "application/json", strings.Replace(statusJSON, `"seq":0,`, "", 1)), `"seq"`},
		{"a key more", "GET", "/api/license?org=acme", tok, "", answer(200, "application/json", strings.Replace(statusJSON, `"seq":0,`, `"seq":0,"x":1,`, 1)), "x"},
		{"a wrong enum", "GET", "/api/license?org=acme", tok, "", answer(200, "application/json", strings.Replace(statusJSON, `"missing"`, `"gone"`, 1)), "gone"},
		{"an undocumented status", "GET", "/api/license?org=acme", tok, "", answer(418, "application/json", `{"error":"forbidden","message":"x"}`), "status 418"},
		{"an undocumented content type", "GET", "/api/license?org=acme", tok, "", answer(200, "text/html", "<p>"), "Content-Type"},
		{"an error code of another status", "GET", "/api/license?org=acme", tok, "", answer(403, "application/json", `{"error":"not_found","message":"x"}`), "not_found"},
		{"429 without Retry-After", "GET", "/api/whoami", tok, "", answer(429, "application/json", `{"error":"rate_limited","message":"x"}`), "Retry-After"},
		{"429 with Retry-After", "GET", "/api/whoami", tok, "", answer(429, "application/json", `{"error":"rate_limited","message":"x"}`, "Retry-After", "3"), ""},
		{"a bad org accepted", "GET", "/api/license?org=Acme", tok, "", answer(200, "application/json", statusJSON), "refuses the request"},
		{"an empty org is absent", "GET", "/api/audit?org=", tok, "", answer(200, "application/json", `{"events":[],"next_cursor":null,"prev_cursor":null}`), ""},
		{"a bad org refused", "GET", "/api/license?org=Acme", tok, "", answer(400, "application/json", `{"error":"org_invalid","message":"x"}`), ""},
		{"no token accepted", "GET", "/api/license?org=acme", "", "", answer(200, "application/json", statusJSON), "refuses the request"},
		{"no token refused", "GET", "/api/license?org=acme", "", "", answer(401, "application/json", `{"error":"unauthorized","message":"x"}`, "WWW-Authenticate", `Bearer realm="ledger"`), ""},
		{"an unknown key accepted", "PUT", "/api/enforcement", tok, `{"mode":"on","x":1}`, answer(200, "application/json", `{"mode":"on"}`), "refuses the request"},
		{"a body accepted", "PUT", "/api/enforcement", tok, `{"mode":"on"}`, answer(200, "application/json", `{"mode":"on"}`), ""},
		{"an unknown path answered", "GET", "/api/nothing", tok, "", answer(200, "application/json", `{}`), "answered 404"},
		{"an unknown path refused", "GET", "/api/nothing", tok, "", answer(404, "application/json", `{"error":"not_found","message":"x"}`), ""},
		{"a wrong method refused", "PATCH", "/api/license", tok, "", answer(405, "application/json", `{"error":"method_not_allowed","message":"x"}`, "Allow", "GET"), ""},
		{"a wrong method's body", "PATCH", "/api/license", tok, "", answer(405, "application/json", `{"error":"not_found","message":"x"}`, "Allow", "GET"), "error body"},
		{"CSV unchecked but its type", "GET", "/api/audit?format=csv", tok, "", answer(200, "text/csv; charset=utf-8", "anything"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			v := New(rec)
			srv := httptest.NewServer(v.Wrap(c.h))
			defer srv.Close()
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			srv.Close()
			got := strings.Join(rec.errs, "\n")
			switch {
			case c.want == "" && got != "":
				t.Errorf("reported:\n%s", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("want a report naming %q, got %q", c.want, got)
			}
			if v.Count() != 1 {
				t.Errorf("%d requests checked", v.Count())
			}
		})
	}
}
