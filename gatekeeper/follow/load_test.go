package follow

import (
	"context"
	"reflect"
	"testing"

	"github.com/licenseledger/ledger/license"
)

// A load folds the same states on one core as on every core, from the
// first message and on top of states seeded from the read model.
func TestFoldOnEveryCoreAgreesWithOneCore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.scenario(t)
	for _, org := range []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"} {
		e.upload(t, org)
	}
	h := e.head(t)
	f := start(t, Config{Stream: e.readerBus(t)}, false)
	ctx := context.Background()
	trust := f.trust()
	for _, from := range []uint64{0, h / 2} {
		serial, parallel := map[string]*license.OrgState{}, map[string]*license.OrgState{}
		if from > 0 { // seeded at from, as a read-model snapshot would be
			if err := f.foldSerial(ctx, serial, 0, from, trust); err != nil {
				t.Fatal(err)
			}
			for org, st := range serial {
				parallel[org] = st
			}
		}
		if err := f.foldSerial(ctx, serial, from, h, trust); err != nil {
			t.Fatal(err)
		}
		if err := f.foldParallel(ctx, e.readerBus(t), parallel, from, h, trust); err != nil {
			t.Fatal(err)
		}
		if len(serial) < 10 || !reflect.DeepEqual(serial, parallel) {
			t.Fatalf("from %d: serial %d orgs, parallel %d orgs, or they differ", from, len(serial), len(parallel))
		}
	}
}
