package ledger

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// driftRecord is what this process knows of the ledger.stream_config_drift
// events on licenses.audit._instance: the subject is read up to scanned,
// and last is the fingerprint of the newest drift event seen ("" when
// none: the stream matched the contract).
type driftRecord struct {
	mu      sync.Mutex
	scanned uint64
	last    string
}

// RecordStreamDrift appends a ledger.stream_config_drift on
// licenses.audit._instance when fields (the stream's departures from the
// contract, none when it matches) differ from the last such event on the
// stream, whoever appended it: once per change, however often the ledger
// checks, whether it restarts, and however many ledgers check. It reports
// whether it appended. Errors are the store's; the next call tries again.
// Safe for concurrent use.
func (s *Service) RecordStreamDrift(ctx context.Context, stream string, fields []events.ConfigField) (bool, error) {
	s.drift.mu.Lock()
	defer s.drift.mu.Unlock()
	want := driftFingerprint(fields)
	subject := events.AuditSubject(license.InstanceOrg)
	actor := events.Actor{Kind: events.ActorSystem, ID: "ledger"}
	if fields == nil {
		fields = []events.ConfigField{}
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		head, err := s.store.Head(ctx, subject)
		if err != nil {
			return false, err
		}
		if err := s.scanDrift(ctx, subject, head); err != nil {
			return false, err
		}
		if s.drift.last == want {
			return false, nil
		}
		env, err := events.New(events.TypeStreamConfigDrift, license.InstanceOrg, s.cfg.Now(), actor, head,
			events.StreamConfigDrift{Stream: stream, Fields: fields})
		if err != nil {
			return false, err
		}
		_, err = s.store.Append(ctx, subject, env, head)
		if isConflict(err) {
			// Another ledger may have recorded the same change: the next
			// scan reads it.
			s.cfg.Metrics.Conflicts.Inc()
			jitter(attempt)
			continue
		}
		if err != nil {
			return false, fmt.Errorf("append %s: %w", events.TypeStreamConfigDrift, err)
		}
		s.drift.last = want
		s.cfg.Metrics.Appended.WithLabelValues(events.TypeStreamConfigDrift).Inc()
		return true, nil
	}
	return false, fmt.Errorf("append %s: %w", events.TypeStreamConfigDrift, events.ErrConflict)
}

// scanDrift reads subject from the last scanned sequence up to head and
// keeps the newest drift event's fingerprint. s.drift.mu must be held.
func (s *Service) scanDrift(ctx context.Context, subject string, head uint64) error {
	if head < s.drift.scanned {
		// The stream was recreated: start over.
		s.drift.scanned, s.drift.last = 0, ""
	}
	err := s.store.ReadSubject(ctx, subject, s.drift.scanned, head, func(m *events.Message) error {
		if m.Type() == events.TypeStreamConfigDrift && m.Envelope != nil {
			var d events.StreamConfigDrift
			if m.Envelope.DecodeData(&d) == nil {
				s.drift.last = driftFingerprint(d.Fields)
			}
		}
		s.drift.scanned = m.Seq
		return nil
	})
	if err == nil {
		s.drift.scanned = max(s.drift.scanned, head)
	}
	return err
}

// driftFingerprint identifies a set of departures; "" is none.
func driftFingerprint(fields []events.ConfigField) string {
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%s=%s>%s;", f.Field, f.Expected, f.Actual)
	}
	return b.String()
}
