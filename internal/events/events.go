// Package events defines the license events on the stream: the envelope,
// the event types and their data, the subjects, and strict decoding.
//
// It is pure (no NATS): adapters move the bytes, this package says what
// they mean. Decoding never fails silently: a message that is not a valid
// envelope decodes as Invalid, so readers can audit it and skip it for state.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/strictjson"
	"github.com/licenseledger/ledger/license"
)

// Schema is the envelope schema this build writes and the newest it reads.
const Schema = 1

// Subject prefixes. Org events fold into state; audit events are recorded
// only.
const (
	OrgPrefix   = "licenses.org."
	AuditPrefix = "licenses.audit."
)

// OrgSubject is the subject of org's state-changing events.
func OrgSubject(org string) string { return OrgPrefix + org }

// AuditSubject is the subject of org's audit-only events.
func AuditSubject(org string) string { return AuditPrefix + org }

// Event types on licenses.org.<org>.
const (
	TypeUploaded     = "license.uploaded"
	TypeInvalidated  = "license.invalidated"
	TypeRemoved      = "license.removed"
	TypeGraceStarted = "license.grace_started"
	TypeExpired      = "license.expired"
	// TypeExpiring is the scheduler's notice ahead of expiry: the org's
	// license expires within data.days days (LICENSE_EXPIRY_NOTICE_DAYS).
	TypeExpiring           = "license.expiring"
	TypeEnforcementChanged = "enforcement.changed"
	// TypeUsageReported records an org's active users as its platform
	// reported them (appended only when the number changes).
	TypeUsageReported = "usage.reported"
	// TypeSeatEnforcementChanged sets, on _instance, how gatekeepers
	// enforce users_limit on seat-consuming routes.
	TypeSeatEnforcementChanged = "seat_enforcement.changed"
)

// Event types on licenses.audit.<org>.
const (
	TypeRejected           = "license.rejected"
	TypeRejectedSuppressed = "license.rejected_suppressed"
	TypeLedgerStarted      = "ledger.started"
	// TypeStreamConfigDrift records on _instance that the stream's
	// configuration departs from the contract, or matches it again.
	TypeStreamConfigDrift = "ledger.stream_config_drift"
)

// TypeInvalid is the audit type of a message that is not a valid envelope.
const TypeInvalid = "invalid"

// Actor kinds.
const (
	ActorOrgAdmin = "org_admin"
	ActorOperator = "operator"
	ActorAuditor  = "auditor"
	ActorSystem   = "system"
	ActorInstall  = "install"
)

// Actor is who caused an event.
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Envelope is one event as stored on the stream.
type Envelope struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Schema  int             `json:"schema"`
	Org     string          `json:"org"`
	At      Time            `json:"at"`
	Actor   Actor           `json:"actor"`
	PrevSeq uint64          `json:"prev_seq"`
	Data    json.RawMessage `json:"data"`
}

// Time is an event time: RFC 3339 UTC with exactly six fractional digits.
type Time struct{ time.Time }

// TimeLayout is the envelope's time format.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// MarshalJSON writes the six-digit UTC form.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(TimeLayout) + `"`), nil
}

// UnmarshalJSON reads any RFC 3339 time (readers are liberal; writers are not).
func (t *Time) UnmarshalJSON(b []byte) error {
	if len(b) == len(TimeLayout)+2 && b[0] == '"' && b[len(b)-1] == '"' {
		if v, ok := parseLayout(b[1 : len(b)-1]); ok {
			t.Time = v
			return nil
		}
	}
	s, err := strictjson.Unquote(b)
	if err != nil { // not a plain JSON string: as encoding/json reads it
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

// parseLayout reads b when it is a valid time in TimeLayout, as
// time.Parse(time.RFC3339Nano) would, without allocating: writers use this
// form, so readers meet it on every event.
func parseLayout(b []byte) (time.Time, bool) {
	// 2006-01-02T15:04:05.000000Z
	if len(b) != len(TimeLayout) || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' ||
		b[16] != ':' || b[19] != '.' || b[26] != 'Z' {
		return time.Time{}, false
	}
	ok := true
	num := func(from, to int) int {
		n := 0
		for _, c := range b[from:to] {
			if c < '0' || c > '9' {
				ok = false
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec, micro := num(11, 13), num(14, 16), num(17, 19), num(20, 26)
	if !ok || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	v := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, time.UTC)
	if v.Day() != day { // past the month's end: time.Parse says why
		return time.Time{}, false
	}
	return v, true
}

// Uploaded is the data of license.uploaded.
type Uploaded struct {
	LicenseID          string  `json:"license_id"`
	Fingerprint        string  `json:"fingerprint"`
	Key                string  `json:"key"`
	Slot               string  `json:"slot"` // SlotCurrent or SlotPending
	GraceDaysEffective int     `json:"grace_days_effective"`
	Source             string  `json:"source"`   // SourceAPI, SourceUI, SourceCLI, SourceInstall
	Replaces           *string `json:"replaces"` // license_id previously in the slot
}

// Upload slots and sources.
const (
	SlotCurrent   = "current"
	SlotPending   = "pending"
	SourceAPI     = "api"
	SourceUI      = "ui"
	SourceCLI     = "cli"
	SourceInstall = "install"
)

// Invalidated is the data of license.invalidated.
type Invalidated struct {
	LicenseID string `json:"license_id"`
	Note      string `json:"note"`
}

// Removed is the data of license.removed.
type Removed struct {
	LicenseID string `json:"license_id"`
}

// Due is the data of license.grace_started and license.expired.
type Due struct {
	LicenseID string `json:"license_id"`
	DueAt     Time   `json:"due_at"`
}

// Expiring is the data of license.expiring: the license LicenseID (the
// one in force, or the pending renewal that covers its expiry) expires at
// Expires, within Days days, a threshold of LICENSE_EXPIRY_NOTICE_DAYS
// reached at DueAt (Expires − Days × 24 h).
type Expiring struct {
	LicenseID string `json:"license_id"`
	Days      int    `json:"days"`
	Expires   Time   `json:"expires"`
	DueAt     Time   `json:"due_at"`
}

// EnforcementChanged is the data of enforcement.changed.
type EnforcementChanged struct {
	Mode string `json:"mode"` // on, off, auto
}

// UsageReported is the data of usage.reported: the org's active users
// (seats in use) as its platform last reported them.
type UsageReported struct {
	Users int `json:"users"`
}

// MaxUsers bounds a usage report (users_limit's own bound).
const MaxUsers = 1<<31 - 1

// SeatEnforcementChanged is the data of seat_enforcement.changed.
type SeatEnforcementChanged struct {
	Mode string `json:"mode"` // off, soft, hard
}

// Enforcement modes.
const (
	EnforceOn   = license.EnforceOn
	EnforceOff  = license.EnforceOff
	EnforceAuto = license.EnforceAuto
)

// Rejected is the data of license.rejected. It never holds the key.
type Rejected struct {
	Code        string `json:"code"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Source      string `json:"source"`
}

// RejectedSuppressed is the data of license.rejected_suppressed.
type RejectedSuppressed struct {
	Count int  `json:"count"`
	Since Time `json:"since"`
}

// LedgerStarted is the data of ledger.started.
type LedgerStarted struct {
	InstallID          string `json:"install_id"`
	KeyringFingerprint string `json:"keyring_fingerprint"`
	Enforcement        string `json:"enforcement"`
	Version            string `json:"version"`
	Clock              Time   `json:"clock"`
	IgnoredRollback    bool   `json:"ignored_clock_rollback,omitempty"`
}

// StreamConfigDrift is the data of ledger.stream_config_drift: the
// settings of Stream that differ from the contract's configuration, each
// with the contract's value and the stream's. No fields: the stream
// matches the contract again.
type StreamConfigDrift struct {
	Stream string        `json:"stream"`
	Fields []ConfigField `json:"fields"`
}

// ConfigField is one stream setting that differs from the contract, named
// as the JetStream API names it (max_age, deny_purge, num_replicas…).
type ConfigField struct {
	Field    string `json:"field"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
}

// String is "field (expected E, actual A)".
func (f ConfigField) String() string {
	return fmt.Sprintf("%s (expected %s, actual %s)", f.Field, f.Expected, f.Actual)
}

// New builds an envelope with a fresh UUIDv7 id. data is marshalled.
func New(typ, org string, at time.Time, actor Actor, prevSeq uint64, data any) (*Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return NewWithID(id.String(), typ, org, at, actor, prevSeq, data)
}

// NewWithID builds an envelope with a given id (deterministic scheduler ids).
func NewWithID(id, typ, org string, at time.Time, actor Actor, prevSeq uint64, data any) (*Envelope, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return &Envelope{ID: id, Type: typ, Schema: Schema, Org: org, At: Time{at.UTC().Truncate(time.Microsecond)},
		Actor: actor, PrevSeq: prevSeq, Data: raw}, nil
}

// Encode returns the bytes to publish.
func (e *Envelope) Encode() ([]byte, error) { return json.Marshal(e) }

// IsOrgType reports whether typ belongs on an org subject (folded).
func IsOrgType(typ string) bool {
	switch typ {
	case TypeUploaded, TypeInvalidated, TypeRemoved, TypeGraceStarted, TypeExpired, TypeExpiring, TypeEnforcementChanged,
		TypeUsageReported, TypeSeatEnforcementChanged:
		return true
	}
	return false
}

// ValidOrg reports whether org names a slot: an org slug or _instance.
func ValidOrg(org string) bool { return org == license.InstanceOrg || license.ValidSlug(org) }

// Message is a decoded stream message.
type Message struct {
	Seq     uint64
	Subject string
	Raw     []byte
	// Envelope is nil when the message is not a valid envelope; Err says why.
	Envelope *Envelope
	Err      error
}

// Type is the envelope's type, or TypeInvalid.
func (m *Message) Type() string {
	if m.Envelope == nil {
		return TypeInvalid
	}
	return m.Envelope.Type
}

// Org is the org the subject names ("" if the subject is not ours).
func (m *Message) Org() string {
	if o, ok := strings.CutPrefix(m.Subject, OrgPrefix); ok {
		return o
	}
	if o, ok := strings.CutPrefix(m.Subject, AuditPrefix); ok {
		return o
	}
	return ""
}

// IsOrgSubject reports whether the message is on an org (folded) subject.
func (m *Message) IsOrgSubject() bool { return strings.HasPrefix(m.Subject, OrgPrefix) }

// Decode checks raw as an envelope published on subject at seq. Unknown
// types and fields are accepted (readers ignore them for state). A message
// that is not JSON, lacks a required field, names another org than its
// subject, or carries an org type on an audit subject (or the reverse)
// decodes with a nil Envelope and Err set.
func Decode(subject string, seq uint64, raw []byte) *Message {
	// One allocation for both: readers decode every message.
	d := &struct {
		m   Message
		env Envelope
	}{m: Message{Seq: seq, Subject: subject, Raw: raw}}
	m := &d.m
	err := decodeEnvelopeInto(raw, &d.env)
	if err == nil {
		err = d.env.checkSubject(m)
	}
	if err != nil {
		m.Err = err
		return m
	}
	m.Envelope = &d.env
	return m
}

// envelopeKeys are the envelope's keys, matched exactly (encoding/json alone
// would accept "ORG" for "org", or a second "org" overriding the first).
var envelopeKeys = []string{"id", "type", "schema", "org", "at", "actor", "prev_seq", "data"}

// decodeEnvelope checks raw and reads the envelope in one pass
// (strictjson.CheckMembers), then gives each member the meaning
// encoding/json would give it when unmarshalling into an Envelope: null
// leaves a field unset, a value of the wrong JSON type is an error, and
// actor's keys match case-insensitively, the last one winning.
func decodeEnvelope(raw []byte) (*Envelope, error) {
	env := new(Envelope)
	if err := decodeEnvelopeInto(raw, env); err != nil {
		return nil, err
	}
	return env, nil
}

// decodeEnvelopeInto is decodeEnvelope into an empty env.
func decodeEnvelopeInto(raw []byte, env *Envelope) error {
	var f envelopeFields
	if err := strictjson.CheckMembers(raw, envelopeKeys, f.member); err != nil {
		return fmt.Errorf("not an envelope: %v", err)
	}
	if err := f.fill(env); err != nil {
		return fmt.Errorf("not an envelope: %v", err)
	}
	switch {
	case env.ID == "":
		return fmt.Errorf("envelope without id")
	case env.Type == "" || env.Type == TypeInvalid:
		return fmt.Errorf("envelope without a type")
	case env.Schema < 1:
		return fmt.Errorf("envelope without a schema")
	case env.At.IsZero():
		return fmt.Errorf("envelope without at")
	case env.Actor.Kind == "":
		return fmt.Errorf("envelope without actor")
	case len(env.Data) == 0 || env.Data[0] != '{':
		return fmt.Errorf("envelope data is not an object")
	}
	if _, err := uuid.Parse(env.ID); err != nil {
		return fmt.Errorf("envelope id is not a UUID")
	}
	return nil
}

// envelopeFields holds the raw value of each envelope key present.
type envelopeFields struct {
	id, typ, schema, org, at, actor, prevSeq, data []byte
}

func (f *envelopeFields) member(key, value []byte) {
	switch string(key) {
	case "id":
		f.id = value
	case "type":
		f.typ = value
	case "schema":
		f.schema = value
	case "org":
		f.org = value
	case "at":
		f.at = value
	case "actor":
		f.actor = value
	case "prev_seq":
		f.prevSeq = value
	case "data":
		f.data = value
	}
}

// fill sets env's fields from f, as json.Unmarshal would.
func (f *envelopeFields) fill(env *Envelope) error {
	env.Data = json.RawMessage(f.data)
	for _, err := range [...]error{
		jsonString("id", f.id, &env.ID),
		jsonString("type", f.typ, &env.Type),
		jsonString("org", f.org, &env.Org),
		jsonInt("schema", f.schema, &env.Schema),
		jsonUint("prev_seq", f.prevSeq, &env.PrevSeq),
		jsonActor(f.actor, &env.Actor),
	} {
		if err != nil {
			return err
		}
	}
	if f.at != nil {
		if err := env.At.UnmarshalJSON(f.at); err != nil {
			return fmt.Errorf("at: %v", err)
		}
	}
	return nil
}

// isNull reports whether v, a checked JSON value, is absent or null.
func isNull(v []byte) bool { return v == nil || v[0] == 'n' }

func jsonString(name string, v []byte, dst *string) error {
	if isNull(v) {
		return nil
	}
	if v[0] != '"' {
		return fmt.Errorf("%s is not a string", name)
	}
	if k, ok := common[string(v)]; ok { // no allocation for the usual words
		*dst = k
		return nil
	}
	s, err := strictjson.Unquote(v)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	*dst = s
	return nil
}

// common maps the JSON string literals of the event types, actor kinds,
// slots, sources and modes to the strings they stand for.
var common = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{TypeUploaded, TypeInvalidated, TypeRemoved, TypeGraceStarted, TypeExpired, TypeExpiring,
		TypeEnforcementChanged, TypeUsageReported, TypeSeatEnforcementChanged, TypeRejected, TypeRejectedSuppressed, TypeLedgerStarted, TypeStreamConfigDrift,
		ActorOrgAdmin, ActorOperator, ActorAuditor, ActorSystem, ActorInstall,
		SlotCurrent, SlotPending, SourceAPI, SourceUI, SourceCLI, SourceInstall, EnforceOn, EnforceOff, EnforceAuto,
		license.SeatsOff, license.SeatsSoft, license.SeatsHard} {
		m[`"`+s+`"`] = s
	}
	return m
}()

func jsonInt(name string, v []byte, dst *int) error {
	if isNull(v) {
		return nil
	}
	n, err := strconv.ParseInt(string(v), 10, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("%s is not an integer", name)
	}
	*dst = int(n)
	return nil
}

func jsonUint(name string, v []byte, dst *uint64) error {
	if isNull(v) {
		return nil
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not an unsigned integer", name)
	}
	*dst = n
	return nil
}

func jsonActor(v []byte, dst *Actor) error {
	if isNull(v) {
		return nil
	}
	if v[0] != '{' {
		return fmt.Errorf("actor is not an object")
	}
	var first error
	err := strictjson.CheckMembers(v, nil, func(key, value []byte) {
		var err error
		switch {
		case string(key) == "kind" || (string(key) != "id" && strings.EqualFold(string(key), "kind")):
			err = jsonString("actor.kind", value, &dst.Kind)
		case string(key) == "id" || strings.EqualFold(string(key), "id"):
			err = jsonString("actor.id", value, &dst.ID)
		}
		if first == nil {
			first = err
		}
	})
	if first != nil {
		return first
	}
	return err
}

func (e *Envelope) checkSubject(m *Message) error {
	if e.Org != m.Org() || !ValidOrg(e.Org) {
		return fmt.Errorf("envelope org %q on subject %q", e.Org, m.Subject)
	}
	if m.IsOrgSubject() != IsOrgType(e.Type) && (IsOrgType(e.Type) || isAuditType(e.Type)) {
		return fmt.Errorf("type %s does not belong on %s", e.Type, m.Subject)
	}
	if (e.Type == TypeEnforcementChanged || e.Type == TypeSeatEnforcementChanged) && e.Org != license.InstanceOrg {
		return fmt.Errorf("%s outside _instance", e.Type)
	}
	if e.Type == TypeUsageReported && e.Org == license.InstanceOrg {
		return fmt.Errorf("usage.reported on _instance: usage is reported per org")
	}
	return nil
}

func isAuditType(typ string) bool {
	return typ == TypeRejected || typ == TypeRejectedSuppressed || typ == TypeLedgerStarted || typ == TypeStreamConfigDrift
}

// DecodeData unmarshals the envelope's data into v, as json.Unmarshal
// does.
func (e *Envelope) DecodeData(v any) error {
	if decodeDataFast(e.Data, v) {
		return nil
	}
	return json.Unmarshal(e.Data, v)
}

// Errors of the event store, returned by adapters and mapped to HTTP by the
// API: a conflict is retried after reloading the org, unavailability is 503.
var (
	ErrConflict    = errors.New("conflict: the subject moved on since it was read")
	ErrUnavailable = errors.New("event store unavailable")
)
