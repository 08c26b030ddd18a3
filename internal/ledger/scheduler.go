package ledger

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tick"
	"github.com/licenseledger/ledger/license"
)

// dueNamespace makes scheduler event ids deterministic: every replica
// computes the same id for the same license and type, so JetStream's
// de-duplication and the per-subject sequence check let one append win.
var dueNamespace = uuid.MustParse("6f1c3a52-3d0e-4c59-9d0a-5b8f1e2d7a41")

// DueEventID is the id of the scheduler's event of type typ for licenseID.
func DueEventID(licenseID, typ string) string {
	return uuid.NewSHA1(dueNamespace, []byte(licenseID+":"+typ)).String()
}

// dueEvent is a scheduler event an org's state still lacks.
type dueEvent struct {
	typ       string
	licenseID string
	dueAt     time.Time
}

// dueFor lists the events due at now for the license in force in st: a
// grace_started at expires and an expired at expires + grace (both, in
// that order, when grace is 0). Invalid and revoked licenses are skipped.
func dueFor(st *license.OrgState, now time.Time) []dueEvent {
	held, _ := st.InForce(now)
	if held == nil || held.Err != nil || held.License.Payload == nil || st.IsRevoked(held.LicenseID) {
		return nil
	}
	id := held.LicenseID
	expires := held.License.Payload.Expires
	var out []dueEvent
	if !now.Before(expires) && !st.GraceStarted[id] {
		out = append(out, dueEvent{events.TypeGraceStarted, id, expires})
	}
	if end := held.GraceEnds(); !now.Before(end) && !st.Expired[id] {
		out = append(out, dueEvent{events.TypeExpired, id, end})
	}
	return out
}

// RunScheduler appends grace_started and expired events when they fall
// due, checking every interval (default 1 s) until ctx ends. Any number of
// ledgers may run it: each event is appended once. After downtime it
// appends the late events once, each with its due time in due_at.
func (s *Service) RunScheduler(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	s.ScheduleDue(ctx)
	tick.Every(ctx, interval, func() { s.ScheduleDue(ctx) })
}

// ScheduleDue appends every event due now, once.
func (s *Service) ScheduleDue(ctx context.Context) {
	now := s.cfg.Now()
	for _, st := range s.states() {
		if len(dueFor(st, now)) == 0 {
			continue
		}
		if err := s.appendDue(ctx, st.Org); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("expiry event not appended; retrying at the next tick", "org", st.Org, "err", err)
		}
	}
}

// appendDue appends org's due events in order, each decided against the
// org's latest state, so a replica that lost the race appends nothing.
func (s *Service) appendDue(ctx context.Context, org string) error {
	if err := s.refold(ctx, org); err != nil {
		return err
	}
	system := events.Actor{Kind: events.ActorSystem, ID: "scheduler"}
	for {
		res, err := s.command(ctx, org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
			due := dueFor(st, now)
			if len(due) == 0 {
				return nil, nil
			}
			d := due[0]
			return events.NewWithID(DueEventID(d.licenseID, d.typ), d.typ, org, now, system, st.Seq,
				events.Due{LicenseID: d.licenseID, DueAt: events.Time{Time: d.dueAt}})
		}, nil)
		s.count("schedule", res, err)
		if err != nil || !res.Appended {
			return err
		}
	}
}
