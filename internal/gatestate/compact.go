package gatestate

import (
	"unsafe"

	"github.com/licenseledger/ledger/internal/projection"
)

// compact returns st with the text its license slots hold twice — the
// upload event's key, fingerprint and license id, and the same values
// decoded from the verified license — sharing one copy. A replica holds
// every licensed org, and the key text is most of an org's footprint.
// States are immutable, so st itself is left alone: a slot that can share
// is copied.
func compact(st *projection.OrgState) *projection.OrgState {
	if st == nil || !canShare(st.Current) && !canShare(st.Pending) {
		return st
	}
	c := *st
	c.Current, c.Pending = shared(st.Current), shared(st.Pending)
	return &c
}

func canShare(s *projection.Slot) bool {
	if s == nil || s.License == nil {
		return false
	}
	l, u := s.License, &s.Upload
	return sameText(u.Key, l.Key) || sameText(u.Fingerprint, l.Fingerprint) ||
		l.Payload != nil && sameText(u.LicenseID, l.Payload.LicenseID)
}

// sameText reports whether a and b are equal strings held in two copies.
func sameText(a, b string) bool {
	return len(a) > 0 && a == b && unsafeData(a) != unsafeData(b)
}

func shared(s *projection.Slot) *projection.Slot {
	if !canShare(s) {
		return s
	}
	c := *s
	l := c.License
	if c.Upload.Key == l.Key {
		c.Upload.Key = l.Key
	}
	if c.Upload.Fingerprint == l.Fingerprint {
		c.Upload.Fingerprint = l.Fingerprint
	}
	if l.Payload != nil && c.Upload.LicenseID == l.Payload.LicenseID {
		c.Upload.LicenseID = l.Payload.LicenseID
	}
	return &c
}

// unsafeData is the address of s's bytes: two equal strings with the same
// address are one copy.
func unsafeData(s string) *byte { return unsafe.StringData(s) }
