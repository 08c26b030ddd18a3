package gatestate

import (
	"reflect"
	"testing"
	"time"
)

// A replica holds an org's key text once: the upload event's copy and the
// verified license's share their bytes, and the state is otherwise the
// fold's.
func TestCachedStateHoldsKeyOnce(t *testing.T) {
	e := newEnv(t)
	e.upload(t, "acme")
	f := start(t, Config{Bus: e.readerBus(t)}, true)
	_, res := e.upload(t, "acme") // applied live, not only loaded
	eventually(t, 5*time.Second, "the upload applied", func() bool { return seqOf(f.cached("acme")) >= res.Seq })
	st := f.cached("acme")
	cur := st.Current
	if cur == nil || cur.License == nil {
		t.Fatalf("no current license: %+v", st)
	}
	if unsafeData(cur.Upload.Key) != unsafeData(cur.License.Key) || unsafeData(cur.Upload.Fingerprint) != unsafeData(cur.License.Fingerprint) {
		t.Error("the key text is held twice")
	}
	if want := e.svc.State("acme"); !reflect.DeepEqual(st.Current, want.Current) || st.Seq != want.Seq {
		t.Errorf("compacted state differs from the ledger's:\n%+v\n%+v", st.Current, want.Current)
	}
}
