package projection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// A reader that holds every licensed org (a gatekeeper replica, the
// ledger) keeps each org's state in a compact form: what decisions,
// commands and status reports need. The license key text (most of an
// org's footprint) is dropped once the key is verified: the decoded
// license keeps its kid, fingerprint and payload, with the payload's
// repeated values (tier, products, features, install id) shared between
// orgs and its org slug shared with the state. The key is read back from
// the stream (ReverifyFrom) — the upload event at the slot's sequence, or the
// org's subject for a slot loaded from PostgreSQL — when a license must
// be verified again (a key ring reload, the install id adopted).

// Compact returns st in its compact form. States are immutable, so st
// itself is left alone: slots that shrink are copied.
func Compact(st *license.OrgState) *license.OrgState {
	if st == nil || !heavy(st.Current) && !heavy(st.Pending) {
		return st
	}
	c := *st
	c.Current, c.Pending = slim(st.Org, st.Current), slim(st.Org, st.Pending)
	return &c
}

// heavy reports whether s still holds key text it may drop. An
// unverified slot keeps it until it is verified: a request for its org
// then verifies it with no I/O, within any decision deadline.
func heavy(s *license.Slot) bool {
	if s == nil || s.Err == license.ErrUnverified {
		return false
	}
	return s.Key != "" || s.License != nil && s.License.Key != ""
}

func slim(org string, s *license.Slot) *license.Slot {
	if !heavy(s) {
		return s
	}
	c := *s
	c.Key = ""
	if l := s.License; l != nil {
		l = l.WithoutKey()
		l.Kid = shared(l.Kid)
		if l.Fingerprint == c.Fingerprint {
			c.Fingerprint = l.Fingerprint
		}
		if p := l.Payload; p != nil {
			q := *p
			if q.OrgSlug == org {
				q.OrgSlug = org
			} else {
				q.OrgSlug = shared(q.OrgSlug)
			}
			q.Tier = license.Tier(shared(string(q.Tier)))
			q.InstallID = shared(q.InstallID)
			q.Products, q.Features = sharedList(q.Products), sharedList(q.Features)
			if c.LicenseID == q.LicenseID {
				c.LicenseID = q.LicenseID
			}
			l.Payload = &q
		}
		c.License = l
	}
	return &c
}

// Values repeated across orgs are kept once, up to sharedMax of them.
const sharedMax = 8192

var sharedVals struct {
	mu    sync.Mutex
	strs  map[string]string
	lists map[string][]string
}

// shared returns the one kept copy of s.
func shared(s string) string {
	if s == "" {
		return ""
	}
	sharedVals.mu.Lock()
	defer sharedVals.mu.Unlock()
	if v, ok := sharedVals.strs[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if sharedVals.strs == nil {
		sharedVals.strs = map[string]string{}
	}
	if len(sharedVals.strs) < sharedMax {
		sharedVals.strs[v] = v
	}
	return v
}

// sharedList returns the one kept copy of list (never modified: payload
// lists are read-only once decoded).
func sharedList(list []string) []string {
	if len(list) == 0 {
		return list
	}
	k := strings.Join(list, "\x00")
	sharedVals.mu.Lock()
	defer sharedVals.mu.Unlock()
	if v, ok := sharedVals.lists[k]; ok {
		return v
	}
	v := make([]string, len(list))
	for i, s := range list {
		v[i] = strings.Clone(s)
	}
	if sharedVals.lists == nil {
		sharedVals.lists = map[string][]string{}
	}
	if len(sharedVals.lists) < sharedMax {
		sharedVals.lists[k] = v
	}
	return v
}

// Keyless reports whether s's key text was dropped (compact) and must be
// read back before s can be verified again.
func Keyless(s *license.Slot) bool {
	return s != nil && s.Key == "" && s.License != nil && s.License.Fingerprint != ""
}

// KeySource reads an org's subject back: what ReverifyFrom needs of the
// stream.
type KeySource interface {
	// Next returns the first message on subject at or after seq, or nil.
	Next(ctx context.Context, subject string, seq uint64) (*events.Message, error)
	// ReadSubject calls fn for messages on subject in (after, upTo], in order.
	ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error
}

// keyOf reads the key of slot s of st back from the stream: the upload
// event at s.Seq, or, for a slot without one (loaded from PostgreSQL), the
// last upload on the org's subject with the slot's fingerprint.
func keyOf(ctx context.Context, src KeySource, st *license.OrgState, s *license.Slot) (string, error) {
	subject := events.OrgSubject(st.Org)
	if s.Seq > 0 {
		m, err := src.Next(ctx, subject, s.Seq)
		if err != nil {
			return "", err
		}
		if m != nil && m.Seq == s.Seq {
			if key, ok := uploadedKey(m, s); ok {
				return key, nil
			}
		}
	}
	var key string
	err := src.ReadSubject(ctx, subject, 0, st.Seq, func(m *events.Message) error {
		if k, ok := uploadedKey(m, s); ok {
			key = k
		}
		return nil
	})
	if err == nil && key == "" {
		err = errors.New("no upload event holds it")
	}
	if err != nil {
		return "", fmt.Errorf("the key of %s's license %s: %w", st.Org, s.LicenseID, err)
	}
	return key, nil
}

// uploadedKey returns the key m uploads if m is the upload of slot s.
func uploadedKey(m *events.Message, s *license.Slot) (string, bool) {
	if m.Envelope == nil || m.Type() != events.TypeUploaded {
		return "", false
	}
	var d events.Uploaded
	if m.Envelope.DecodeData(&d) != nil || d.Fingerprint != s.Fingerprint || d.Key == "" {
		return "", false
	}
	return d.Key, true
}

// ReverifyFrom returns st verified again under trust, in compact form,
// reading from src the key text of compact slots (Keyless). A compact slot
// whose kid trust no longer holds is unknown_key at once, without reading
// anything: a vendor key withdrawn from the ring takes effect even while
// the stream is out of reach.
func ReverifyFrom(ctx context.Context, src KeySource, trust Trust, st *license.OrgState) (*license.OrgState, error) {
	n := st.Clone()
	for _, p := range []**license.Slot{&n.Current, &n.Pending} {
		s := *p
		if s == nil {
			continue
		}
		c := *s
		if Keyless(s) {
			if _, trusted := trust.Ring.Key(s.License.Kid); !trusted {
				c.Held = license.Held{License: s.License, Err: trust.Ring.Check(s.License, license.Expect{}), GraceDays: s.GraceDays}
				*p = &c
				continue
			}
			key, err := keyOf(ctx, src, st, s)
			if err != nil {
				return nil, err
			}
			c.Key = key
		}
		verify(&c, trust, st.Org, c.GraceDays)
		*p = &c
	}
	return Compact(n), nil
}
