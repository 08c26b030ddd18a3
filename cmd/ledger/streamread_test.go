package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/memstream"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/license"
)

// memStreamWith is an in-memory stream holding n events, alternately on
// two orgs' subjects.
func memStreamWith(t *testing.T, n int) *memstream.Stream {
	t.Helper()
	s := memstream.New(memstream.Config{})
	ctx := context.Background()
	for i := range n {
		org := []string{"acme", "globex"}[i%2]
		subject := events.OrgSubject(org)
		head, err := s.Head(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		env, err := events.New(events.TypeRemoved, org, time.Now(), events.Actor{Kind: events.ActorOperator, ID: "t"}, head, events.Removed{LicenseID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, subject, env, head); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// A verification's lookup serves the stream's messages asked in order
// from its consumer, and any other one directly; a sequence the stream
// does not hold is no message.
func TestStreamLookups(t *testing.T) {
	s := memStreamWith(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lookup, done := streamLookups(s)()
	defer done()
	for _, seq := range []uint64{1, 2, 3, 4, 2, 5, 9} {
		subject, raw, err := lookup(ctx, seq)
		m, _ := s.Get(ctx, seq)
		switch {
		case err != nil:
			t.Fatalf("seq %d: %v", seq, err)
		case m == nil && (subject != "" || raw != nil):
			t.Fatalf("seq %d past the head: %s %s", seq, subject, raw)
		case m != nil && (subject != m.Subject || string(raw) != string(m.Raw)):
			t.Fatalf("seq %d: %s %s, want %s %s", seq, subject, raw, m.Subject, m.Raw)
		}
	}
}

// The digest a backup records is the audit chain's over the stream's
// messages; a message missing from the stream gives none.
func TestDigestUpTo(t *testing.T) {
	s := memStreamWith(t, 4)
	ctx := context.Background()
	h := audit.Zero
	for seq := uint64(1); seq <= 3; seq++ {
		m, _ := s.Get(ctx, seq)
		h = audit.Next(h, seq, m.Raw)
	}
	if got, err := digestUpTo(ctx, s, 3); err != nil || got != audit.Digest(3, h) {
		t.Fatalf("digest up to 3: %s, %v; want %s", got, err, audit.Digest(3, h))
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if got, err := digestUpTo(short, s, 5); err == nil {
		t.Fatalf("digest up to 5 on a stream of 4: %s", got)
	}
}

// An accepted divergence is recorded on the install's audit subject after
// its head, even when another audit event got there first.
func TestAnnounceReplacement(t *testing.T) {
	s := memStreamWith(t, 2)
	ctx := context.Background()
	now := time.Now()
	rep := postgres.Replacement{Table: "license_audit_replaced_1", FirstDivergentSeq: 7, Rows: 9}
	first, err := announceReplacement(ctx, s, now, rep)
	if err != nil {
		t.Fatal(err)
	}
	racing := &racingAppender{Stream: s}
	second, err := announceReplacement(ctx, racing, now, rep)
	if err != nil || second != first+2 {
		t.Fatalf("after a racing audit event: seq %d, %v; want %d", second, err, first+2)
	}
	for _, seq := range []uint64{first, second} {
		m, _ := s.Get(ctx, seq)
		var got postgres.Replacement
		if m.Subject != events.AuditSubject(license.InstanceOrg) || m.Type() != TypeAuditReplaced ||
			m.Envelope.DecodeData(&got) != nil || got != rep {
			t.Fatalf("seq %d: %+v", seq, m)
		}
	}
	if m, _ := s.Get(ctx, second); m.Envelope.PrevSeq != first+1 {
		t.Fatalf("prev_seq %d, want %d", m.Envelope.PrevSeq, first+1)
	}
}

// racingAppender appends another event on the subject right after the
// first Head it answers, as a ledger would between a read and an append.
type racingAppender struct {
	*memstream.Stream
	heads int
}

func (r *racingAppender) Head(ctx context.Context, subject string) (uint64, error) {
	head, err := r.Stream.Head(ctx, subject)
	if r.heads++; r.heads == 1 && err == nil {
		env, _ := events.New(events.TypeLedgerStarted, license.InstanceOrg, time.Now(), events.Actor{Kind: events.ActorSystem, ID: "other"}, head, events.LedgerStarted{})
		if _, aerr := r.Stream.Append(ctx, subject, env, head); aerr != nil {
			return 0, errors.Join(errors.New("racing append"), aerr)
		}
	}
	return head, err
}
