package events

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/strictjson"
)

// referenceDecode is decodeEnvelope as encoding/json does it: the strict
// check, then json.Unmarshal into an Envelope, then the same checks of
// the fields.
func referenceDecode(raw []byte) (*Envelope, error) {
	if err := strictjson.CheckObject(raw, envelopeKeys); err != nil {
		return nil, err
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, err
	}
	switch {
	case env.ID == "", env.Type == "" || env.Type == TypeInvalid, env.Schema < 1, env.At.IsZero(),
		env.Actor.Kind == "", len(env.Data) == 0 || env.Data[0] != '{':
		return nil, fmt.Errorf("a field is missing")
	}
	if _, err := uuid.Parse(env.ID); err != nil {
		return nil, err
	}
	return &env, nil
}

var envelopeSeeds = []string{
	`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"license.removed","schema":1,"org":"acme","at":"2026-11-29T13:01:02.123456Z","actor":{"kind":"operator","id":"deploy-bot"},"prev_seq":41,"data":{"license_id":"x"}}`,
	`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"t","schema":1,"at":"2026-11-29T15:01:02.1+02:00","actor":{"KIND":"operator","\u212aind":"x","Id":"a","iD":null,"extra":[1]},"data":{ } ,"zz":null}`,
	`{"id":"\u0030193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"t\ud800","schema":-0,"org":null,"at":"2026-11-29T13:01:02Z","actor":{"kind":"s"},"prev_seq":null,"data":{}}`,
	`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"t","schema":1e0,"at":"2026-11-29T13:01:02Z","actor":{"kind":"s"},"data":{}}`,
	`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"t","schema":1,"at":"2026-11-29T13:01:02Z","actor":{"kind":"s"},"prev_seq":-0,"data":{}}`,
	`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"t","schema":1,"at":null,"actor":{"kind":5},"prev_seq":18446744073709551616,"data":null}`,
	`{"id":7,"type":true,"schema":"1","at":1,"actor":"x","prev_seq":1.5,"data":[]}`,
}

// FuzzDecodeEnvelope checks the one-pass envelope decoder against
// encoding/json: the same inputs are envelopes, with the same fields.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeEnvelope(raw)
		want, werr := referenceDecode(raw)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: decoded %+v, %v; encoding/json: %+v, %v", raw, got, err, want, werr)
		}
		if err != nil {
			return
		}
		if got.ID != want.ID || got.Type != want.Type || got.Schema != want.Schema || got.Org != want.Org ||
			got.At != want.At || got.Actor != want.Actor || got.PrevSeq != want.PrevSeq || string(got.Data) != string(want.Data) {
			t.Fatalf("%q: decoded %+v; encoding/json: %+v", raw, got, want)
		}
	})
}

func TestDecodeEnvelopeLikeEncodingJSON(t *testing.T) {
	for _, s := range envelopeSeeds {
		got, err := decodeEnvelope([]byte(s))
		want, werr := referenceDecode([]byte(s))
		if (err == nil) != (werr == nil) || (err == nil && (got.Actor != want.Actor || got.At != want.At || got.ID != want.ID ||
			got.Type != want.Type || got.Schema != want.Schema || got.PrevSeq != want.PrevSeq)) {
			t.Errorf("%s:\n decoded %+v, %v\n encoding/json: %+v, %v", s, got, err, want, werr)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := []byte(envelopeSeeds[0])
	for _, impl := range []struct {
		name   string
		decode func([]byte) (*Envelope, error)
	}{{"onepass", decodeEnvelope}, {"encoding_json", referenceDecode}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.decode(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var dataSeeds = []string{
	`{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","fingerprint":"sha256:00","key":"a.b","slot":"current","grace_days_effective":7,"source":"api","replaces":null}`,
	`{"LICENSE_ID":"x","license_id":"y","Key":"k","slot":null,"grace_days_effective":-0,"replaces":"r","REPLACES":null,"note":"n\u00e9","mode":"on","due_at":"2026-11-29T13:01:02.123456Z"}`,
	`{"replaces":"a","Replaces":"b","grace_days_effective":9223372036854775807,"\u212aey":"kelvin","mode":null}`,
	`{"grace_days_effective":1.5}`,
	`{"grace_days_effective":"7"}`,
	`{"due_at":null}`,
	`{"due_at":"2026-02-30T00:00:00.000000Z"}`,
	`{"due_at":"2026-11-29T15:01:02+02:00","license_id":5}`,
	`{"license_id":"a","license_id":"b"}`,
	`null`,
	`[]`,
	`{"slot":"current"} x`,
	`{"users":42}`,
	`{"users":-1}`,
	`{"users":1.5}`,
	`{"users":"42"}`,
	`{"users":9223372036854775808}`,
	`{"Users":7,"users":8}`,
	`{"users":null}`,
	`{"mode":"hard"}`,
}

// FuzzDecodeData checks the one-pass data decoder against json.Unmarshal:
// whatever it decodes, json.Unmarshal decodes alike without an error, and
// DecodeData always answers as json.Unmarshal does.
func FuzzDecodeData(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env := &Envelope{Data: data}
		for _, newTarget := range []func() any{
			func() any { return new(Uploaded) }, func() any { return new(Invalidated) }, func() any { return new(Removed) },
			func() any { return new(Due) }, func() any { return new(EnforcementChanged) },
			func() any { return new(UsageReported) }, func() any { return new(SeatEnforcementChanged) },
		} {
			fast, ref, got := newTarget(), newTarget(), newTarget()
			werr := json.Unmarshal(data, ref)
			if decodeDataFast(data, fast) && (werr != nil || !reflect.DeepEqual(fast, ref)) {
				t.Fatalf("%q into %T: decoded %+v; json.Unmarshal: %+v, %v", data, fast, fast, ref, werr)
			}
			err := env.DecodeData(got)
			if (err == nil) != (werr == nil) || !reflect.DeepEqual(got, ref) {
				t.Fatalf("%q into %T: DecodeData %+v, %v; json.Unmarshal: %+v, %v", data, got, got, err, ref, werr)
			}
		}
	})
}

func TestDecodeDataLikeEncodingJSON(t *testing.T) {
	fast := 0
	for _, s := range dataSeeds {
		for _, target := range []any{new(Uploaded), new(Invalidated), new(Removed), new(Due), new(EnforcementChanged),
			new(UsageReported), new(SeatEnforcementChanged)} {
			ref := reflect.New(reflect.TypeOf(target).Elem()).Interface()
			werr := json.Unmarshal([]byte(s), ref)
			if decodeDataFast([]byte(s), target) {
				fast++
				if werr != nil || !reflect.DeepEqual(target, ref) {
					t.Errorf("%s into %T: decoded %+v; json.Unmarshal: %+v, %v", s, target, target, ref, werr)
				}
			}
		}
	}
	if fast < 10 {
		t.Errorf("only %d seeds took the fast path", fast)
	}
	// A target that already holds values is left to json.Unmarshal.
	d := Invalidated{Note: "kept"}
	if decodeDataFast([]byte(`{"license_id":"x"}`), &d) {
		t.Error("decoded into a target that is not empty")
	}
}
