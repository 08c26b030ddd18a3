package auth

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultRateLimit is the per-token budget when none is configured:
// 20 requests per second, bursts of 100.
var DefaultRateLimit = RateLimit{PerSecond: 20, Burst: 100}

// RateLimit is a per-token request budget: PerSecond requests per second
// on average, Burst at once. The zero value means no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Unlimited reports whether l limits nothing.
func (l RateLimit) Unlimited() bool { return l.PerSecond <= 0 }

func (l RateLimit) String() string {
	if l.Unlimited() {
		return "off"
	}
	return strconv.FormatFloat(l.PerSecond, 'f', -1, 64) + "/s:" + strconv.Itoa(l.Burst)
}

// rateLimitSyntax is how errors and help describe the setting.
const rateLimitSyntax = "RATE[/s|/m|/h][:BURST] (e.g. 20/s, 1200/m, 20/s:100) or off"

// ParseRateLimit reads a rate limit: "off"; or RATE, a positive number of
// requests per second, per minute with /m or per hour with /h (/s is
// accepted), optionally followed by ":BURST", a positive whole number
// (default DefaultRateLimit.Burst). Empty is DefaultRateLimit.
func ParseRateLimit(s string) (RateLimit, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return DefaultRateLimit, nil
	case "off":
		return RateLimit{}, nil
	}
	bad := func(why string) (RateLimit, error) {
		return RateLimit{}, fmt.Errorf("%q: %s; want %s", s, why, rateLimitSyntax)
	}
	spec, burstText, hasBurst := strings.Cut(s, ":")
	l := RateLimit{Burst: DefaultRateLimit.Burst}
	if hasBurst {
		b, err := strconv.Atoi(burstText)
		if err != nil || b < 1 || b > 1_000_000 {
			return bad("the burst is a whole number 1..1000000")
		}
		l.Burst = b
	}
	num, unit, _ := strings.Cut(spec, "/")
	per := time.Second
	switch unit {
	case "", "s":
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return bad("the unit is s, m or h")
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0) || math.IsInf(n, 0) {
		return bad("the rate is a positive number")
	}
	l.PerSecond = n / per.Seconds()
	return l, nil
}

// Limiter keeps one token bucket per key. A bucket that has refilled is
// forgotten (a fresh one is the same), so memory follows the keys active
// in the last few seconds.
type Limiter struct {
	limit     RateLimit
	mu        sync.Mutex
	buckets   map[[32]byte]*rate.Limiter
	lastSweep time.Time
}

// sweepEvery is how often Allow looks for refilled buckets to forget.
const sweepEvery = time.Minute

// NewLimiter returns a limiter applying l to every key; l must not be
// unlimited.
func NewLimiter(l RateLimit) *Limiter {
	return &Limiter{limit: l, buckets: map[[32]byte]*rate.Limiter{}}
}

// Allow spends one request of key's budget at now. When it is spent it
// returns false and how long until the next request would be allowed.
func (l *Limiter) Allow(key [32]byte, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(l.limit.PerSecond), l.limit.Burst)
		l.buckets[key] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.TokensAt(now)
	return false, time.Duration(missing / l.limit.PerSecond * float64(time.Second))
}

// sweep forgets every bucket that is full again.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.limit.Burst) {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
