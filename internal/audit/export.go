package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/licenseledger/ledger/internal/events"
)

// Export formats: a JSON array, JSON Lines, or CSV (RFC 4180).
const (
	FormatJSON  = "json"
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// RecordJSON is a record as the audit API and exports write it. Envelope
// holds the stream message's bytes exactly, as a JSON string, so that any
// subset of records verifies row by row: hash = SHA-256(prev_hash ‖
// uint64be(seq) ‖ envelope). Bytes that are not valid UTF-8 cannot be a
// JSON string: Envelope is then null and EnvelopeB64 holds them (standard
// base64). EventID, Actor and At are null for invalid messages.
type RecordJSON struct {
	Seq         uint64        `json:"seq"`
	EventID     *string       `json:"event_id"`
	Subject     string        `json:"subject"`
	Org         string        `json:"org"`
	Type        string        `json:"type"`
	Actor       *events.Actor `json:"actor"`
	At          *string       `json:"at"`
	Envelope    *string       `json:"envelope"`
	EnvelopeB64 string        `json:"envelope_b64,omitempty"`
	Hash        string        `json:"hash"`
	PrevHash    string        `json:"prev_hash"`
}

// JSONOf returns r's JSON form.
func JSONOf(r *Record) RecordJSON {
	j := RecordJSON{Seq: r.Seq, Subject: r.Subject, Org: r.Org, Type: r.Type,
		Hash: r.Hash.Hex(), PrevHash: r.PrevHash.Hex()}
	if r.EventID != "" {
		j.EventID = &r.EventID
	}
	if r.ActorKind != "" || r.ActorID != "" {
		j.Actor = &events.Actor{Kind: r.ActorKind, ID: r.ActorID}
	}
	if !r.At.IsZero() {
		at := r.At.UTC().Format(events.TimeLayout)
		j.At = &at
	}
	if utf8.Valid(r.Raw) {
		env := string(r.Raw)
		j.Envelope = &env
	} else {
		j.EnvelopeB64 = base64.StdEncoding.EncodeToString(r.Raw)
	}
	return j
}

// Raw returns the message bytes a RecordJSON carries.
func (j *RecordJSON) Raw() ([]byte, error) {
	if j.Envelope != nil {
		return []byte(*j.Envelope), nil
	}
	return base64.StdEncoding.DecodeString(j.EnvelopeB64)
}

// CSVHeader is the first line of a CSV export.
var CSVHeader = []string{"seq", "event_id", "subject", "org", "type", "actor_kind", "actor_id", "at", "envelope", "hash", "prev_hash"}

// CSVBase64Prefix starts a CSV envelope cell that holds the bytes in
// standard base64 rather than as text: for bytes that are not valid UTF-8,
// hold a CR or LF (which CSV readers may rewrite), or themselves begin with
// the prefix. Every other cell holds the bytes as they are, so a valid
// envelope (JSON, beginning with "{") is always plain text.
const CSVBase64Prefix = "base64:"

// CSVEnvelope is the envelope cell of raw.
func CSVEnvelope(raw []byte) string {
	if utf8.Valid(raw) && !bytes.ContainsAny(raw, "\r\n") && !bytes.HasPrefix(raw, []byte(CSVBase64Prefix)) {
		return string(raw)
	}
	return CSVBase64Prefix + base64.StdEncoding.EncodeToString(raw)
}

// CSVRaw returns the bytes an envelope cell holds.
func CSVRaw(cell string) ([]byte, error) {
	if b64, ok := strings.CutPrefix(cell, CSVBase64Prefix); ok {
		return base64.StdEncoding.DecodeString(b64)
	}
	return []byte(cell), nil
}

// Encoder writes records in one export format. Close ends the document
// (the JSON array's bracket) and flushes; an Encoder holds at most a
// buffer, whatever the number of records.
type Encoder interface {
	Encode(r *Record) error
	Close() error
}

// NewEncoder returns an Encoder writing format (FormatJSON, FormatJSONL or
// FormatCSV) to w. The CSV header is written at once.
func NewEncoder(w io.Writer, format string) (Encoder, error) {
	switch format {
	case FormatJSON:
		return &arrayEncoder{w: w, enc: newJSONEncoder(w)}, nil
	case FormatJSONL:
		return &linesEncoder{enc: newJSONEncoder(w)}, nil
	case FormatCSV:
		c := csv.NewWriter(w)
		c.UseCRLF = true
		return &csvEncoder{w: c}, c.Write(CSVHeader)
	}
	return nil, fmt.Errorf("format %q: want json, jsonl or csv", format)
}

func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// linesEncoder writes one JSON record per line.
type linesEncoder struct{ enc *json.Encoder }

func (e *linesEncoder) Encode(r *Record) error { return e.enc.Encode(JSONOf(r)) }
func (e *linesEncoder) Close() error           { return nil }

// arrayEncoder writes a JSON array, one record per line.
type arrayEncoder struct {
	w   io.Writer
	enc *json.Encoder
	n   int
}

func (e *arrayEncoder) Encode(r *Record) error {
	sep := "[\n"
	if e.n > 0 {
		sep = ","
	}
	e.n++
	if _, err := io.WriteString(e.w, sep); err != nil {
		return err
	}
	return e.enc.Encode(JSONOf(r))
}

func (e *arrayEncoder) Close() error {
	end := "]\n"
	if e.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(e.w, end)
	return err
}

type csvEncoder struct{ w *csv.Writer }

func (e *csvEncoder) Encode(r *Record) error {
	var at string
	if !r.At.IsZero() {
		at = r.At.UTC().Format(events.TimeLayout)
	}
	return e.w.Write([]string{strconv.FormatUint(r.Seq, 10), r.EventID, r.Subject, r.Org, r.Type,
		r.ActorKind, r.ActorID, at, CSVEnvelope(r.Raw), r.Hash.Hex(), r.PrevHash.Hex()})
}

func (e *csvEncoder) Close() error {
	e.w.Flush()
	return e.w.Error()
}
