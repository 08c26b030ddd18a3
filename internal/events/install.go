package events

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/license"
)

// SubjectReader reads one subject of the stream: all the install id
// lookup needs, so that every reader (ledger, gatekeeper, replay) finds it
// the same way.
type SubjectReader interface {
	// Head returns the last sequence on subject, 0 if none.
	Head(ctx context.Context, subject string) (uint64, error)
	// ReadSubject calls fn for messages on subject in (after, upTo], in order.
	ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*Message) error) error
}

// InstallID returns the install id recorded by the first valid
// ledger.started on _instance's audit subject ("" when there is none yet)
// and that subject's head.
func InstallID(ctx context.Context, r SubjectReader) (string, uint64, error) {
	subject := AuditSubject(license.InstanceOrg)
	head, err := r.Head(ctx, subject)
	if err != nil || head == 0 {
		return "", head, err
	}
	var found string
	errFound := errors.New("found")
	err = r.ReadSubject(ctx, subject, 0, head, func(m *Message) error {
		if found = InstallIDOf(m); found != "" {
			return errFound
		}
		return nil
	})
	if err != nil && err != errFound {
		return "", 0, err
	}
	return found, head, nil
}

// InstallIDOf returns the install id a ledger.started message on
// _instance's audit subject records, canonical; "" for any other message
// or an id that is not a UUID.
func InstallIDOf(m *Message) string {
	if m.Subject != AuditSubject(license.InstanceOrg) || m.Type() != TypeLedgerStarted {
		return ""
	}
	var d LedgerStarted
	if m.Envelope.DecodeData(&d) != nil {
		return ""
	}
	u, err := uuid.Parse(d.InstallID)
	if err != nil {
		return ""
	}
	return u.String()
}
