package jwtorg

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

const (
	issuer   = "https://id.example.com/"
	audience = "https://app.example.com"
	orgClaim = "https://app.example.com/org"
)

// t0 is the tests' time.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// clock is an adjustable Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// claims are a valid token's claims at t0 (exp an hour later, the org
// acme), with pairs of name, value set (a nil value deletes the claim).
func claims(set ...any) map[string]any {
	m := map[string]any{"iss": issuer, "aud": audience, "sub": "user-1", "iat": t0.Unix(),
		"exp": t0.Add(time.Hour).Unix(), orgClaim: "acme"}
	for i := 0; i+1 < len(set); i += 2 {
		if set[i+1] == nil {
			delete(m, set[i].(string))
		} else {
			m[set[i].(string)] = set[i+1]
		}
	}
	return m
}

// writeFile replaces path's content atomically.
func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// testConfig is the configuration of the tests' verifiers for keys (a
// file or URL), with the test clock and a discarding logger.
func testConfig(keys string, c *clock) Config {
	return Config{Keys: keys, Issuer: issuer, Audience: audience, Claim: orgClaim, Now: c.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// fileVerifier is a verifier of the JWKS doc in a file; mod adjusts the
// configuration.
func fileVerifier(tb testing.TB, doc []byte, mod func(*Config)) (v *Verifier, c *clock, path string) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "jwks.json")
	writeFile(tb, path, doc)
	c = newClock()
	cfg := testConfig(path, c)
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v, c, path
}

// metric is the value of v's metric name with the given label values
// (name=value pairs), -1 when absent.
func metric(tb testing.TB, v *Verifier, name string, labels ...string) float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(v.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// verifications is gatekeeper_jwt_verifications_total{result}.
func verifications(tb testing.TB, v *Verifier, result string) int {
	tb.Helper()
	return int(metric(tb, v, "gatekeeper_jwt_verifications_total", "result", result))
}

// logBuffer collects a verifier's log lines.
type logBuffer struct{ testenv.Buffer }

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// b64 is the encoding of JWS segments.
var b64 = base64.RawURLEncoding

func TestMain(m *testing.M) {
	code := m.Run()
	jwttest.Cleanup()
	os.Exit(code)
}
