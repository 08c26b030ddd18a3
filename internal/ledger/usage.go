package ledger

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// DefaultUsageReportsPerHour is how many usage changes an org may record
// per hour unless LEDGER_USAGE_RATE says otherwise.
const DefaultUsageReportsPerHour = 60

// ReportUsage records org's active users as its platform reports them
// (usage.reported). A report of the number already recorded is a success
// with no event, so a platform may report as often as it likes; a report
// that changes it is limited per org (LEDGER_USAGE_RATE): past the limit
// it is refused (rate_limited, with when to report again) and nothing is
// appended. Usage is reported per org, never for _instance.
func (s *Service) ReportUsage(ctx context.Context, org string, actor events.Actor, users int) (Result, error) {
	if org == license.InstanceOrg {
		return Result{}, fail("org_invalid", "usage is reported per org, not for "+license.InstanceOrg)
	}
	if users < 0 || users > events.MaxUsers {
		return Result{}, fail(CodeBadRequest, fmt.Sprintf("users must be 0..%d", events.MaxUsers))
	}
	granted := false
	res, err := s.command(ctx, org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		if n, ok := st.Users(); ok && n == users {
			return nil, nil
		}
		if !granted {
			ok, wait := s.usage.allow(org, now)
			if !ok {
				return nil, &Error{Code: CodeRateLimited, RetryAfter: wait, Message: fmt.Sprintf(
					"%s's users changed more often than %d times an hour (LEDGER_USAGE_RATE); nothing was recorded: report again in %s",
					org, s.usage.perHour, wait.Round(time.Second))}
			}
			granted = true
		}
		return events.New(events.TypeUsageReported, org, now, actor, st.Seq, events.UsageReported{Users: users})
	}, nil)
	if CodeOf(err) == CodeRateLimited {
		s.cfg.Metrics.UsageLimited.Inc()
	}
	s.count("usage", res, err)
	return res, err
}

// SetSeatEnforcement records the install-wide seat enforcement mode on
// _instance (seat_enforcement.changed). Setting the mode already in force
// is a success with no event.
func (s *Service) SetSeatEnforcement(ctx context.Context, actor events.Actor, mode string) (string, error) {
	if mode != license.SeatsOff && mode != license.SeatsSoft && mode != license.SeatsHard {
		return "", fail(CodeBadRequest, "mode must be off, soft or hard")
	}
	if err := s.setMode(ctx, "seat_enforcement", (*license.OrgState).SeatMode, mode, func(now time.Time, prev uint64) (*events.Envelope, error) {
		return events.New(events.TypeSeatEnforcementChanged, license.InstanceOrg, now, actor, prev, events.SeatEnforcementChanged{Mode: mode})
	}); err != nil {
		return "", err
	}
	return s.State(license.InstanceOrg).SeatMode(), nil
}

// usageLimiter is a token bucket per org for usage changes: perHour a
// hour, with a burst of a sixth of that (at least 1).
type usageLimiter struct {
	perHour int
	mu      sync.Mutex
	orgs    map[string]*rate.Limiter
	swept   time.Time // the last sweep: at most one a minute
}

func newUsageLimiter(perHour int) *usageLimiter {
	return &usageLimiter{perHour: perHour, orgs: map[string]*rate.Limiter{}}
}

func (l *usageLimiter) burst() int { return max(1, l.perHour/6) }

// allow takes a token from org's bucket at now; when there is none it
// says how long until there is one.
func (l *usageLimiter) allow(org string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.orgs[org]
	if lim == nil {
		if len(l.orgs) > 10000 && now.Sub(l.swept) >= time.Minute {
			l.swept = now
			for o, b := range l.orgs { // forget orgs whose bucket is full again
				if b.TokensAt(now) >= float64(l.burst()) {
					delete(l.orgs, o)
				}
			}
		}
		lim = rate.NewLimiter(rate.Limit(float64(l.perHour)/3600), l.burst())
		l.orgs[org] = lim
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing * 3600 / float64(l.perHour) * float64(time.Second)))
	return false, max(wait, time.Second)
}
