package httpapi

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/auth"
)

// codeRateLimited answers a token over its LEDGER_RATE_LIMIT budget.
const codeRateLimited = "rate_limited"

// rateLimitedCounter returns ledger_rate_limited_total, registered in the
// server's registry on first use and shared by every authenticated route.
func (s *Server) rateLimitedCounter() prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ledger_rate_limited_total", Help: "API requests refused with 429 because their token exceeded LEDGER_RATE_LIMIT.",
	})
	if s.cfg.Registry == nil {
		return c
	}
	if err := s.cfg.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
		s.cfg.Logger.Warn("ledger_rate_limited_total not registered", "err", err)
	}
	return c
}

// withinRateLimit spends one request of p's budget, or answers 429
// rate_limited with Retry-After (whole seconds, at least 1) and returns
// false.
func (s *Server) withinRateLimit(w http.ResponseWriter, p *auth.Principal, limited prometheus.Counter) bool {
	ok, wait := s.cfg.Tokens.Allow(p)
	if ok {
		return true
	}
	limited.Inc()
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, statusOf[codeRateLimited], codeRateLimited,
		"too many requests with this token; retry after "+strconv.Itoa(secs)+" s")
	return false
}
