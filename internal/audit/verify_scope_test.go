package audit_test

import (
	"context"
	"slices"
	"testing"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

// In fixture, acme has seqs 2, 4, 5 (an invalid message) and 7; globex 3
// and 6 (not UTF-8); _instance 1 and 8.

func TestVerifyScopedIntact(t *testing.T) {
	msgs := fixture(t)
	for name, r := range map[string]audit.Reader{"memory": memoryOf(t, msgs), "records": chain(msgs)} {
		for _, c := range []struct {
			scope []string
			rows  uint64
			line  string
		}{
			{[]string{"acme"}, 4, "ok 4 scope=acme"},
			{[]string{"globex"}, 2, "ok 2 scope=globex"},
			{[]string{"acme", "_instance"}, 6, "ok 6 scope=acme,_instance"},
			{[]string{"initech"}, 0, "ok 0 scope=initech"},
		} {
			res := verify(t, r, audit.VerifyOptions{Scope: c.scope})
			if !res.OK || res.Rows != c.rows || res.Digest != "" || !slices.Equal(res.Scope, c.scope) || res.String() != c.line {
				t.Errorf("%s %v: %+v", name, c.scope, res)
			}
		}
	}
	if _, err := audit.Verify(context.Background(), chain(msgs), audit.VerifyOptions{Scope: []string{"acme"}, Digest: "8:" + audit.Zero.Hex()}); err == nil {
		t.Error("a scoped verification took a digest")
	}
}

// A change to one of the scope's records is found, at its seq, whichever
// column; a change to another org's record is not, unless it breaks a link
// of the scope's records, which then names the scope's record.
func TestVerifyScopedFindsItsOwn(t *testing.T) {
	acme := []string{"acme"}
	cases := []struct {
		name   string
		tamper func(s sliceReader) sliceReader
		seq    uint64 // 0: the acme scope verifies
		col    string
		rows   uint64
		global uint64 // where the whole-trail verification fails
	}{
		{"acme's bytes, vouched for by the next record", func(s sliceReader) sliceReader { s[3].Raw = flip(s[3].Raw, 40); return s }, 4, audit.ColEnvelopeRaw, 1, 4},
		{"acme's hash column", func(s sliceReader) sliceReader { s[6].Hash[0] ^= 1; return s }, 7, audit.ColHash, 3, 7},
		{"acme's prev_hash", func(s sliceReader) sliceReader { s[1].PrevHash[0] ^= 1; return s }, 2, audit.ColPrevHash, 0, 2},
		{"acme's org column", func(s sliceReader) sliceReader { s[3].Org = "globex"; return s }, 4, audit.ColOrg, 1, 4},
		{"acme's actor", func(s sliceReader) sliceReader { s[6].ActorID = "someone-else"; return s }, 7, audit.ColActorID, 3, 7},
		// The whole trail's walk finds the tree_hashes left as they were
		// (the next record's prev_hash would have, at 8).
		{"acme's record rewritten, hash and columns too", func(s sliceReader) sliceReader {
			tree := s[6].Tree
			s[6] = audit.NewRecord(events.Decode(s[6].Subject, 7, flip(s[6].Raw, 40)), s[6].PrevHash, base)
			s[6].Tree = tree
			return s
		}, 7, audit.ColHash, 3, 7},
		{"a record removed after acme's seq 2", func(s sliceReader) sliceReader { return slices.Delete(s, 2, 3) }, 4, audit.ColSeq, 1, 3},
		{"globex's bytes", func(s sliceReader) sliceReader { s[2].Raw = flip(s[2].Raw, 40); return s }, 0, "", 4, 3},
		{"globex's org column", func(s sliceReader) sliceReader { s[2].Org = "initech"; return s }, 0, "", 4, 3},
		{"_instance's last record", func(s sliceReader) sliceReader { s[7].ActorID = "x"; return s }, 0, "", 4, 8},
		{"globex's hash column, before acme's seq 7", func(s sliceReader) sliceReader { s[5].Hash[0] ^= 1; return s }, 7, audit.ColPrevHash, 3, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := verify(t, c.tamper(chain(fixture(t))), audit.VerifyOptions{Scope: acme})
			if c.seq == 0 {
				if !res.OK || res.Rows != c.rows {
					t.Fatalf("acme sees another org's change: %+v", res)
				}
			} else if res.OK || res.BadSeq != c.seq || res.Column != c.col || res.Rows != c.rows {
				t.Fatalf("got %+v, want mismatch at seq %d (%s) after %d rows", res, c.seq, c.col, c.rows)
			}
			if all := verify(t, c.tamper(chain(fixture(t))), audit.VerifyOptions{}); all.OK || all.BadSeq != c.global {
				t.Fatalf("the whole trail: %+v, want a mismatch at %d", all, c.global)
			}
		})
	}
}

// The stream is asked for the scope's records only.
func TestVerifyScopedStream(t *testing.T) {
	msgs := fixture(t)
	var asked []uint64
	stream := func(_ context.Context, seq uint64) (string, []byte, error) {
		asked = append(asked, seq)
		m := msgs[seq-1]
		if seq == 7 {
			return m.Subject, flip(m.Raw, 3), nil
		}
		return m.Subject, m.Raw, nil
	}
	res := verify(t, chain(msgs), audit.VerifyOptions{Scope: []string{"acme"}, Stream: stream})
	if res.OK || res.BadSeq != 7 || res.Column != audit.ColEnvelopeRaw || !slices.Equal(asked, []uint64{2, 4, 5, 7}) {
		t.Fatalf("%+v, asked %v", res, asked)
	}
	asked = nil
	if res := verify(t, chain(msgs), audit.VerifyOptions{Scope: []string{"globex"}, Stream: stream}); !res.OK || !slices.Equal(asked, []uint64{3, 6}) {
		t.Fatalf("globex: %+v, asked %v", res, asked)
	}
}

// A record removed between two other orgs' records leaves no trace in the
// scope's records: the neighbours' scopes, and the whole trail, see it.
func TestVerifyScopedRemovalBetweenOthers(t *testing.T) {
	s := slices.Delete(chain(fixture(t)), 6, 7) // acme's seq 7, between globex's 6 and _instance's 8
	if res := verify(t, s, audit.VerifyOptions{Scope: []string{"acme"}}); !res.OK || res.Rows != 3 {
		t.Fatalf("acme: %+v", res)
	}
	if res := verify(t, s, audit.VerifyOptions{Scope: []string{"_instance"}}); res.OK || res.BadSeq != 8 || res.Column != audit.ColSeq {
		t.Fatalf("_instance: %+v", res)
	}
	if res := verify(t, s, audit.VerifyOptions{}); res.OK || res.BadSeq != 7 || res.Column != audit.ColSeq {
		t.Fatalf("the whole trail: %+v", res)
	}
}
