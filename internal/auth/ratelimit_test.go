package auth

import (
	"strings"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	good := []struct {
		in    string
		rate  float64
		burst int
	}{
		{"", 20, 100},
		{"20/s", 20, 100},
		{"20", 20, 100},
		{" 20/s:100 ", 20, 100},
		{"1200/m", 20, 100},
		{"3600/h:5", 1, 5},
		{"2/s:2", 2, 2},
		{"0.5:1", 0.5, 1},
		{"off", 0, 0},
	}
	for _, c := range good {
		l, err := ParseRateLimit(c.in)
		if err != nil || l.PerSecond != c.rate || l.Burst != c.burst {
			t.Errorf("%q: %+v %v, want %v/s burst %d", c.in, l, err, c.rate, c.burst)
		}
	}
	if l, _ := ParseRateLimit("off"); !l.Unlimited() || l.String() != "off" {
		t.Errorf("off: %+v %s", l, l)
	}
	if l, _ := ParseRateLimit("1200/m"); l.String() != "20/s:100" {
		t.Errorf("String: %s", l)
	}
	for _, in := range []string{"0", "-1/s", "x", "20/d", "20/s:0", "20/s:-3", "20/s:", "20/s:1.5", "/s", "20//s", "NaN", "Inf/s", "20/s:2:3"} {
		if l, err := ParseRateLimit(in); err == nil || !strings.Contains(err.Error(), "RATE[/s|/m|/h][:BURST]") {
			t.Errorf("%q: %+v %v, want an error", in, l, err)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(RateLimit{PerSecond: 2, Burst: 2})
	a, b := Hash(tokA), Hash(tokB)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 2 {
		if ok, _ := l.Allow(a, t0); !ok {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	ok, wait := l.Allow(a, t0)
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("third request: %v, retry after %v (want refused, ≤ 500ms)", ok, wait)
	}
	// A refused request spends nothing: half a second later one passes.
	if ok, _ := l.Allow(a, t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("refused after refilling one request")
	}
	if ok, _ := l.Allow(b, t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("another key was limited")
	}
	if l.Len() != 2 {
		t.Fatalf("%d buckets", l.Len())
	}
	// Idle keys are forgotten once their bucket is full again.
	later := t0.Add(2 * sweepEvery)
	if ok, _ := l.Allow(Hash(tokC), later); !ok || l.Len() != 1 {
		t.Fatalf("after idling: %d buckets, want 1", l.Len())
	}
}

func TestTokensAllow(t *testing.T) {
	tokens := NewTokens(mustAdmin(t, tokA, tokB))
	pa, _ := tokens.Authenticate(tokA)
	pb, _ := tokens.Authenticate(tokB)
	for range 1000 {
		if ok, _ := tokens.Allow(pa); !ok {
			t.Fatal("limited without a rate limit")
		}
	}
	tokens.SetRateLimit(RateLimit{PerSecond: 1.0 / 60, Burst: 1})
	if ok, _ := tokens.Allow(pa); !ok {
		t.Fatal("first request refused")
	}
	ok, wait := tokens.Allow(pa)
	if ok || wait < 59*time.Second || wait > time.Minute {
		t.Fatalf("second request: %v %v", ok, wait)
	}
	if ok, _ := tokens.Allow(pb); !ok {
		t.Fatal("another token was limited")
	}
	tokens.SetRateLimit(RateLimit{})
	if ok, _ := tokens.Allow(pa); !ok {
		t.Fatal("limited after turning the limit off")
	}
}
