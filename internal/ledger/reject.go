package ledger

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/licenseledger/ledger/internal/events"
)

// rejectLimiter caps license.rejected events per org; what it drops is
// counted and reported by one license.rejected_suppressed event.
type rejectLimiter struct {
	perMinute int
	mu        sync.Mutex
	orgs      map[string]*rejectState
	swept     time.Time // the last sweep
}

type rejectState struct {
	lim        *rate.Limiter
	suppressed int
	since      time.Time
}

func newRejectLimiter(perMinute int) *rejectLimiter {
	return &rejectLimiter{perMinute: perMinute, orgs: map[string]*rejectState{}}
}

// allow reports whether a rejection for org may be audited now, and how
// many were suppressed (and since when) before it.
func (l *rejectLimiter) allow(org string, now time.Time) (ok bool, suppressed int, since time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateOf(org, now)
	if !st.lim.AllowN(now, 1) {
		if st.suppressed == 0 {
			st.since = now
		}
		st.suppressed++
		return false, 0, time.Time{}
	}
	suppressed, since = st.suppressed, st.since
	st.suppressed = 0
	return true, suppressed, since
}

// pending returns and clears suppressed counts of orgs whose bucket has
// room again (flushed by a ticker so counts never stay unreported), or of
// every org when all is set (at shutdown).
func (l *rejectLimiter) pending(now time.Time, all bool) map[string]rejectState {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]rejectState{}
	for org, st := range l.orgs {
		if st.suppressed > 0 && (all || st.lim.TokensAt(now) >= 1) {
			out[org] = rejectState{suppressed: st.suppressed, since: st.since}
			st.suppressed = 0
		}
	}
	return out
}

// stateOf returns org's state, created with a full bucket if new (then
// forgetting idle orgs once there are many). l.mu must be held.
func (l *rejectLimiter) stateOf(org string, now time.Time) *rejectState {
	st := l.orgs[org]
	if st == nil {
		if len(l.orgs) > 10000 && now.Sub(l.swept) >= time.Minute {
			l.swept = now // a full scan at most once a minute, however many orgs arrive
			l.sweep(now)
		}
		st = &rejectState{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.orgs[org] = st
	}
	return st
}

// restore adds back a count taken for an event that was not appended.
func (l *rejectLimiter) restore(org string, count int, since, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateOf(org, now)
	if st.suppressed == 0 || since.Before(st.since) {
		st.since = since
	}
	st.suppressed += count
}

// sweep forgets orgs with nothing pending and a full bucket.
func (l *rejectLimiter) sweep(now time.Time) {
	for org, st := range l.orgs {
		if st.suppressed == 0 && st.lim.TokensAt(now) >= float64(l.perMinute) {
			delete(l.orgs, org)
		}
	}
}

// audit appends a license.rejected for org, preceded by a
// license.rejected_suppressed when rejections were dropped before it.
// Failures are logged: the caller's answer is the rejection itself.
func (s *Service) audit(ctx context.Context, org string, actor events.Actor, rej events.Rejected) {
	now := s.cfg.Now()
	ok, suppressed, since := s.rejects.allow(org, now)
	if !ok {
		s.cfg.Metrics.RejectsDropped.Inc()
		return
	}
	if suppressed > 0 {
		s.appendSuppressed(ctx, org, suppressed, since)
	}
	s.appendAudit(ctx, org, events.TypeRejected, actor, rej)
}

// appendSuppressed appends a license.rejected_suppressed for org; a count
// that could not be appended goes back to the limiter for the next flush.
func (s *Service) appendSuppressed(ctx context.Context, org string, count int, since time.Time) {
	_, err := s.appendAudit(ctx, org, events.TypeRejectedSuppressed, events.Actor{Kind: events.ActorSystem, ID: "ledger"},
		events.RejectedSuppressed{Count: count, Since: events.Time{Time: since}})
	if err != nil {
		s.rejects.restore(org, count, since, s.cfg.Now())
	}
}

// FlushSuppressed appends license.rejected_suppressed for orgs whose
// dropped rejections were not reported by a later rejection. Run it
// periodically, and with all set at shutdown, so that no count is lost:
// then every org's count is appended, whether its bucket has room or not.
func (s *Service) FlushSuppressed(ctx context.Context, all bool) {
	for org, st := range s.rejects.pending(s.cfg.Now(), all) {
		s.appendSuppressed(ctx, org, st.suppressed, st.since)
	}
}

// appendAudit appends an audit-only event on org's audit subject, with the
// subject's last sequence as prev_seq (retrying when another writer got
// there first).
func (s *Service) appendAudit(ctx context.Context, org, typ string, actor events.Actor, data any) (uint64, error) {
	subject := events.AuditSubject(org)
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		var head, seq uint64
		head, err = s.store.Head(ctx, subject)
		if err != nil {
			break
		}
		var env *events.Envelope
		env, err = events.New(typ, org, s.cfg.Now(), actor, head, data)
		if err != nil {
			return 0, err
		}
		seq, err = s.store.Append(ctx, subject, env, head)
		if err == nil {
			s.cfg.Metrics.Appended.WithLabelValues(typ).Inc()
			return seq, nil
		}
		if !isConflict(err) {
			break
		}
		s.cfg.Metrics.Conflicts.Inc()
		jitter(attempt)
	}
	s.cfg.Logger.Error("audit event not appended", "type", typ, "org", org, "err", err)
	return 0, err
}
