package strictjson

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

var knownKeys = []string{"id", "type", "kind", "data"}

// class is the kind of an error: what a caller can tell from it.
func class(err error) string {
	if err == nil {
		return "ok"
	}
	msg := err.Error()
	for _, c := range []string{"not valid UTF-8", "not JSON", "not a JSON object", "duplicate key",
		"must be spelled", "nested deeper", "data after the JSON object"} {
		if strings.Contains(msg, c) {
			return c
		}
	}
	return "unknown: " + msg
}

var cases = []struct {
	in   string
	want string // error class
}{
	{`{}`, "ok"},
	{" \t\r\n{ } \n", "ok"},
	{`{"id":"x","type":"t","other":[1,-2.5e+3,0,true,false,null,{"a":{}},[]],"ID2":1}`, "ok"},
	{`{"a":"\u0000\"\\\/\b\f\n\r\t\ud83d\ude00 é ✓"}`, "ok"},
	{`{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}`, "ok"}, // the same key in different objects
	{`{"a":1,"A":2}`, "ok"},            // only known keys are case-checked
	{`{"data":{"ID":1,"id":2}}`, "ok"}, // below the top level too
	{`{"x":-0.0e-0}`, "ok"},
	{``, "not JSON"},
	{`   `, "not JSON"},
	{`hello`, "not JSON"},
	{`{`, "not JSON"},
	{`{"a"}`, "not JSON"},
	{`{"a":}`, "not JSON"},
	{`{"a":1,}`, "not JSON"},
	{`{,"a":1}`, "not JSON"},
	{`{"a":1 "b":2}`, "not JSON"},
	{`{"a":01}`, "not JSON"},
	{`{"a":1.}`, "not JSON"},
	{`{"a":.5}`, "not JSON"},
	{`{"a":1e}`, "not JSON"},
	{`{"a":+1}`, "not JSON"},
	{`{"a":-}`, "not JSON"},
	{`{"a":tru}`, "not JSON"},
	{`{"a":nul}`, "not JSON"},
	{`{"a":nulll}`, "not JSON"},
	{`{"a":"\x"}`, "not JSON"},
	{`{"a":"\u12"}`, "not JSON"},
	{`{"a":"\'"}`, "not JSON"},
	{"{\"a\":\"\t\"}", "not JSON"},
	{`{"a":"b}`, "not JSON"},
	{`{"a":[1,]}`, "not JSON"},
	{`{"a":[1 2]}`, "not JSON"},
	{`{'a':1}`, "not JSON"},
	{"\ufeff{}", "not JSON"},
	{`[1,2]`, "not a JSON object"},
	{`"x"`, "not a JSON object"},
	{`null`, "not a JSON object"},
	{`12`, "not a JSON object"},
	{`{}{}`, "data after the JSON object"},
	{`{} x`, "data after the JSON object"},
	{`{}]`, "data after the JSON object"},
	{`{},`, "data after the JSON object"},
	{`{"a":1,"a":2}`, "duplicate key"},
	{`{"a":1,"\u0061":2}`, "duplicate key"},
	{`{"x":{"b":[{"c":1,"c":1}]}}`, "duplicate key"},
	{`{"\ud800":1,"\ufffd":2}`, "duplicate key"}, // a lone surrogate reads as U+FFFD
	{`{"ID":"x"}`, "must be spelled"},
	{`{"Type":"x"}`, "must be spelled"},
	{`{"\u212aind":"x"}`, "must be spelled"}, // KELVIN SIGN folds to k
	{`{"DATA":{}}`, "must be spelled"},
	{"{\"a\":\"\xff\"}", "not valid UTF-8"},
	{"{\"a\":\"\xed\xa0\x80\"}", "not valid UTF-8"}, // an encoded surrogate
	{"{}\xff", "not valid UTF-8"},
	{"\xff{}", "not valid UTF-8"},
	{"{\"a\":1,\"a\":\"\xff\"}", "not valid UTF-8"}, // UTF-8 is checked first
	{`{"a":` + strings.Repeat(`[`, 31) + strings.Repeat(`]`, 31) + `}`, "ok"},
	{`{"a":` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `}`, "nested deeper"},
	{`{"a":` + strings.Repeat(`{"b":`, 32) + `1` + strings.Repeat(`}`, 33), "nested deeper"},
	{`{"a":` + strings.Repeat(`[`, 100000), "nested deeper"},
}

func TestCheckObject(t *testing.T) {
	for _, c := range cases {
		if got := class(CheckObject([]byte(c.in), knownKeys)); got != c.want {
			t.Errorf("%q: %s, want %s", c.in, got, c.want)
		}
		if got := class(referenceCheck([]byte(c.in), knownKeys)); got != c.want {
			t.Errorf("%q: the reference says %s, want %s", c.in, got, c.want)
		}
	}
}

func TestCheckObjectManyKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 5000 {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	unique := b.String() + `"last":{}}`
	if err := CheckObject([]byte(unique), knownKeys); err != nil {
		t.Fatalf("5,000 unique keys: %v", err)
	}
	for _, dup := range []string{"k0", "k15", "k16", "k17", "k4999"} {
		in := b.String() + `"` + dup + `":1}`
		if err := CheckObject([]byte(in), knownKeys); class(err) != "duplicate key" {
			t.Errorf("duplicate %s after 5,000 keys: %v", dup, err)
		}
	}
}

func TestCheckMembers(t *testing.T) {
	in := ` {"id" : "a\u0062" , "n":-1.5e3,"o":{"x":[1, 2]},"\u0074ype":null}`
	var got []string
	err := CheckMembers([]byte(in), knownKeys, func(key, value []byte) {
		got = append(got, string(key)+"="+string(value))
	})
	want := []string{`id="a\u0062"`, `n=-1.5e3`, `o={"x":[1, 2]}`, `type=null`}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members %q, %v; want %q", got, err, want)
	}
	if err := CheckMembers([]byte(`{"a":1,"a":2}`), nil, func(key, value []byte) {}); err == nil {
		t.Fatal("duplicate accepted")
	}
}

func TestUnquote(t *testing.T) {
	for _, lit := range []string{`""`, `"abc"`, `"é✓"`, `"a\"b\\c\/d\be\ff\ng\rh\ti"`, `"\u00e9\u2713"`,
		`"\ud83d\ude00"`, `"\ud800"`, `"\ud800x"`, `"\ud800\u0041"`, `"\udc00\ud800"`, `"\ud83d\ude00\ud800\ude00"`} {
		var want string
		if err := json.Unmarshal([]byte(lit), &want); err != nil {
			t.Fatal(err)
		}
		got, err := Unquote([]byte(lit))
		if err != nil || got != want {
			t.Errorf("Unquote(%s) = %q, %v; want %q", lit, got, err, want)
		}
	}
	for _, lit := range []string{``, `"`, `x`, `"a`, `"a"b"`, `"\x"`, "\"\t\"", "\"\xff\"", `"\u12"`} {
		if s, err := Unquote([]byte(lit)); err == nil {
			t.Errorf("Unquote(%q) = %q", lit, s)
		}
	}
}

// FuzzCheckObject checks the one-pass scanner against encoding/json's
// token stream: the same inputs pass, and those that fail, fail for the
// same reason.
func FuzzCheckObject(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"license.uploaded","schema":1,"org":"acme","at":"2026-11-29T13:01:02.123456Z","actor":{"kind":"operator","id":"deploy-bot"},"prev_seq":41,"data":{"license_id":"x","key":"abc.def","replaces":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := CheckObject(data, knownKeys), referenceCheck(data, knownKeys)
		if class(got) != class(want) {
			t.Fatalf("%q: %v; encoding/json's token stream says %v", data, got, want)
		}
		if got != nil {
			return
		}
		// Each member value is a JSON value, and its key what
		// encoding/json reads.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%q passed but does not decode: %v", data, err)
		}
		n := 0
		CheckMembers(data, knownKeys, func(key, value []byte) {
			n++
			if v, ok := m[string(key)]; !ok || string(v) != string(value) {
				t.Fatalf("member %q = %q; encoding/json reads %q", key, value, v)
			}
			if value[0] == '"' {
				var want string
				json.Unmarshal(value, &want)
				if got, err := Unquote(value); err != nil || got != want {
					t.Fatalf("Unquote(%s) = %q, %v; want %q", value, got, err, want)
				}
			}
		})
		if n != len(m) {
			t.Fatalf("%d members handed out of %d", n, len(m))
		}
	})
}

func BenchmarkCheckObject(b *testing.B) {
	in := []byte(`{"id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","type":"license.uploaded","schema":1,"org":"acme","at":"2026-11-29T13:01:02.123456Z","actor":{"kind":"operator","id":"deploy-bot"},"prev_seq":41,"data":{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","fingerprint":"sha256:0123456789abcdef","key":"` + strings.Repeat("QUJD", 200) + `","slot":"current","grace_days_effective":7,"source":"api","replaces":null}}`)
	known := []string{"id", "type", "schema", "org", "at", "actor", "prev_seq", "data"}
	for _, impl := range []struct {
		name  string
		check func([]byte, []string) error
	}{{"onepass", CheckObject}, {"tokens", referenceCheck}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := impl.check(in, known); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
