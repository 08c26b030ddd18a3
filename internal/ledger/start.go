package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// Start adopts the install id from the stream (the first ledger.started on
// licenses.audit._instance), or creates one on a stream that has none, and
// appends this ledger's ledger.started. Concurrent first starts agree: the
// loser of the append race re-reads and adopts the winner's id.
//
// A clock more than license.Skew behind the newest event's time is an error
// (ErrClockRollback) unless extra.IgnoredRollback, which ledger.started
// records.
func (s *Service) Start(ctx context.Context, extra events.LedgerStarted) error {
	if err := s.checkClock(ctx, extra.IgnoredRollback); err != nil {
		return err
	}
	subject := events.AuditSubject(license.InstanceOrg)
	actor := events.Actor{Kind: events.ActorSystem, ID: "ledger"}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		id, head, err := events.InstallID(ctx, s.store)
		if err != nil {
			return err
		}
		if id == "" {
			id = uuid.NewString()
		}
		data := extra
		data.InstallID = id
		data.KeyringFingerprint = s.cfg.Keys.Ring().Fingerprint()
		data.Version = s.cfg.Version
		data.Clock = events.Time{Time: s.cfg.Now()}
		if data.Enforcement == "" {
			data.Enforcement = s.State(license.InstanceOrg).EnforcementMode()
		}
		env, err := events.New(events.TypeLedgerStarted, license.InstanceOrg, s.cfg.Now(), actor, head, data)
		if err != nil {
			return err
		}
		_, err = s.store.Append(ctx, subject, env, head)
		if isConflict(err) {
			jitter(attempt)
			continue
		}
		if err != nil {
			return fmt.Errorf("append ledger.started: %w", err)
		}
		adopted := s.InstallID() != id
		s.installID.Store(id)
		s.cfg.Metrics.Appended.WithLabelValues(events.TypeLedgerStarted).Inc()
		if adopted {
			s.Reverify(ctx) // what was verified without the install id (a first start)
		}
		return nil
	}
	return fmt.Errorf("append ledger.started: %w", events.ErrConflict)
}

// ErrClockRollback reports a clock behind the stream's newest event.
var ErrClockRollback = errors.New("clock rollback")

func (s *Service) checkClock(ctx context.Context, ignore bool) error {
	m, err := s.store.Newest(ctx)
	if err != nil || m == nil || m.Envelope == nil {
		return err
	}
	now := s.cfg.Now()
	if behind := m.Envelope.At.Sub(now); behind > license.Skew {
		if ignore {
			s.cfg.Logger.Warn("clock is behind the newest event; starting anyway (--ignore-clock-rollback)", "behind", behind.Round(time.Second))
			return nil
		}
		return fmt.Errorf("%w: this clock (%s) is %s behind the newest event (seq %d at %s); fix the clock, or start with --ignore-clock-rollback (recorded in ledger.started)",
			ErrClockRollback, now.UTC().Format(time.RFC3339), behind.Round(time.Second), m.Seq, m.Envelope.At.UTC().Format(time.RFC3339))
	}
	return nil
}

// AdoptInstallID sets the install id from the stream, if it has one, so the
// initial fold verifies install-bound licenses without a second pass.
func (s *Service) AdoptInstallID(ctx context.Context) error {
	id, _, err := events.InstallID(ctx, s.store)
	if err == nil && id != "" {
		s.installID.Store(id)
	}
	return err
}

// InstallInfo is the install's identity.
type InstallInfo struct {
	InstallID          string `json:"install_id"`
	KeyringFingerprint string `json:"keyring_fingerprint"`
	Enforcement        string `json:"enforcement"`
	SeatEnforcement    string `json:"seat_enforcement"`
	Version            string `json:"version"`
}

// Install returns the install's identity as this ledger sees it.
func (s *Service) Install() InstallInfo {
	return InstallInfo{InstallID: s.InstallID(), KeyringFingerprint: s.cfg.Keys.Ring().Fingerprint(),
		Enforcement: s.State(license.InstanceOrg).EnforcementMode(), SeatEnforcement: s.State(license.InstanceOrg).SeatMode(),
		Version: s.cfg.Version}
}
