package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/auth"
)

func rateLimitedTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ledger_rate_limited_total" {
			if len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
				t.Fatalf("ledger_rate_limited_total has labels: %v", mf)
			}
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("ledger_rate_limited_total is not registered")
	return 0
}

func TestAuthedRateLimit(t *testing.T) {
	tokA, tokB := strings.Repeat("a", 40), strings.Repeat("b", 40)
	set, err := auth.AdminSet(tokA, tokB)
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(set)
	tokens.SetRateLimit(auth.RateLimit{PerSecond: 2, Burst: 2})
	reg := prometheus.NewRegistry()
	s := New(Config{Tokens: tokens, Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	// Two authenticated routes share one counter and one budget per token.
	h1 := s.authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"actor": principal(r.Context()).Actor().ID})
	})
	h2 := s.authed(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, map[string]string{}) })
	call := func(h http.HandlerFunc, tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/license?org=acme", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		return rec
	}

	// Unauthenticated requests are refused before any budget is spent.
	for range 5 {
		if rec := call(h1, ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("no token: %d", rec.Code)
		}
		if rec := call(h1, strings.Repeat("c", 40)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("unknown token: %d", rec.Code)
		}
	}
	if rec := call(h1, tokA); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"token:`) {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	if rec := call(h2, tokA); rec.Code != http.StatusOK {
		t.Fatalf("second: %d %s", rec.Code, rec.Body)
	}
	rec := call(h1, tokA)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("third: %d %s", rec.Code, rec.Body)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "rate_limited" || body["message"] == "" {
		t.Fatalf("429 body: %s", rec.Body)
	}
	if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	if rec := call(h1, tokB); rec.Code != http.StatusOK {
		t.Fatalf("another token: %d", rec.Code)
	}
	if n := rateLimitedTotal(t, reg); n != 1 {
		t.Fatalf("ledger_rate_limited_total = %v, want 1", n)
	}
	if statusOf["rate_limited"] != http.StatusTooManyRequests {
		t.Fatal("rate_limited is not 429 in the status table")
	}
}

// Building the handler twice on one registry does not panic on the
// counter's registration.
func TestRateLimitedCounterRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Config{Tokens: auth.NewTokens(&auth.Set{}), Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	s.Handler()
	s.Handler()
	if n := rateLimitedTotal(t, reg); n != 0 {
		t.Fatalf("got %v", n)
	}
}
