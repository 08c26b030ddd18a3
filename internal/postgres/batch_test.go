package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// A batch's revocations of an org are the license ids its committed state
// does not know, each once, with the sequence that first revoked it: with
// a few in the batch, and with many, ids repeated.
func TestFoldOrgRevocations(t *testing.T) {
	for _, n := range []int{3, 15, 16, 17, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			st := license.NewOrgState("acme")
			st.Seq, st.Revoked = 1, license.Revocations{}.With(id(0), license.Revocation{Seq: 1})
			var msgs []*events.Message
			want := map[string]uint64{}
			prev := uint64(1)
			for i := range 2 * n {
				lid := id(i % (n + 1)) // every id twice, id 0 committed already
				seq := prev + 1
				env, err := events.New(events.TypeInvalidated, "acme", time.Now(), events.Actor{Kind: events.ActorOperator, ID: "op"},
					prev, events.Invalidated{LicenseID: lid})
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := env.Encode()
				msgs = append(msgs, events.Decode(events.OrgSubject("acme"), seq, raw))
				if _, ok := want[lid]; !ok && lid != id(0) {
					want[lid] = seq
				}
				prev = seq
			}
			f := foldOrg(projection.Trust{}, st, msgs)
			got := map[string]uint64{}
			for _, r := range f.revoked {
				if _, dup := got[r.licenseID]; dup {
					t.Fatalf("%s revoked twice", r.licenseID)
				}
				got[r.licenseID] = r.seq
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("revocations %v, want %v", got, want)
			}
		})
	}
}

func id(i int) string { return fmt.Sprintf("0193a5b0-7e1a-7c3d-9f00-%012x", i) }
