package witness_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/testenv/witnesstest"
	"github.com/licenseledger/ledger/internal/witness"
)

// trail is a log of n records with the tree rows a store would keep.
type trail struct {
	leaves [][]byte
	rows   map[uint64][]byte
	tree   *audit.Tree
}

func newTrail(leaves [][]byte) *trail {
	tr := &trail{rows: map[uint64][]byte{}, tree: audit.NewTree()}
	tr.grow(leaves...)
	return tr
}

func (tr *trail) grow(leaves ...[]byte) {
	for _, l := range leaves {
		tr.leaves = append(tr.leaves, l)
		tr.rows[uint64(len(tr.leaves))] = tr.tree.Append(l)
	}
}

func (tr *trail) TreeRows(_ context.Context, seqs []uint64) (map[uint64][]byte, error) {
	out := map[uint64][]byte{}
	for _, s := range seqs {
		if r, ok := tr.rows[s]; ok {
			out[s] = r
		}
	}
	return out, nil
}

func records(from, to int, tag string) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, fmt.Appendf(nil, `{"record":%d,"tag":%q}`, i, tag))
	}
	return out
}

func TestWitnessProtocol(t *testing.T) {
	ctx := context.Background()
	key, _, err := audit.LoadCheckpointKey(filepath.Join(t.TempDir(), "checkpoint.key"), audit.Origin("install-1"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(tr *trail) audit.Checkpoint {
		t.Helper()
		msg, err := key.Sign(tr.tree.Size(), tr.tree.Root())
		if err != nil {
			t.Fatal(err)
		}
		return audit.Checkpoint{Size: tr.tree.Size(), Root: tr.tree.Root(), Note: msg}
	}
	tw := witnesstest.New(t, key.VerifierKey())
	srv := httptest.NewServer(tw)
	defer srv.Close()
	archive := t.TempDir()
	w, err := witness.Parse(tw.VKey + " " + srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []witness.Outcome
	sender := &witness.Sender{Witnesses: []*witness.Witness{w}, Archive: archive, Logger: slog.New(slog.DiscardHandler),
		Count: func(_ string, o witness.Outcome) { outcomes = append(outcomes, o) }}

	tr := newTrail(records(0, 5, "a"))
	sender.Tree = tr
	cp5 := sign(tr)
	sender.Send(ctx, cp5)
	tr.grow(records(5, 9, "a")...)
	sender.Send(ctx, sign(tr))
	if st := w.Status(); st.Size != 9 || st.Fork != "" || st.Error != "" || fmt.Sprint(outcomes) != "[cosigned cosigned]" {
		t.Fatalf("after two checkpoints: %+v %v", st, outcomes)
	}
	// The archive holds the checkpoint cosigned: it opens with both keys.
	files, _ := filepath.Glob(filepath.Join(archive, "*.checkpoint"))
	if len(files) != 2 {
		t.Fatalf("archive: %v", files)
	}
	cosigned, _ := os.ReadFile(files[1])
	wv, _ := fnote.NewVerifierForCosignatureV1(tw.VKey)
	lv, _ := note.NewVerifier(key.VerifierKey())
	if n, err := note.Open(cosigned, note.VerifierList(wv, lv)); err != nil || len(n.Sigs) != 2 {
		t.Fatalf("the archived checkpoint is not cosigned: %v\n%s", err, cosigned)
	}

	// A ledger restarted knows nothing of the witness's size: the 409
	// tells it, and the retry proves from there.
	w2, _ := witness.Parse(srv.URL)
	tr.grow(records(9, 12, "a")...)
	if _, o, err := w2.Add(ctx, tr, sign(tr)); o != witness.Cosigned || err != nil {
		t.Fatalf("after a restart: %v %v", o, err)
	}

	// A trail rewritten after record 3 and grown past what the witness
	// saw: its proof from 12 fails, a fork.
	forked := newTrail(append(records(0, 3, "a"), records(3, 14, "b")...))
	_, o, err := w2.Add(ctx, forked, sign(forked))
	if o != witness.Fork || !strings.Contains(err.Error(), "not a prefix") || w2.Status().Fork == "" {
		t.Fatalf("a forked trail: %v %v %+v", o, err, w2.Status())
	}
	// A trail rewound below what the witness holds: a fork too.
	w3, _ := witness.Parse(srv.URL)
	short := newTrail(records(0, 4, "a"))
	if _, o, err := w3.Add(ctx, short, sign(short)); o != witness.Fork || !strings.Contains(err.Error(), "rewound") {
		t.Fatalf("a rewound trail: %v %v", o, err)
	}

	// A witness that does not know this log's key refuses it.
	other := httptest.NewServer(witnesstest.New(t, tw.VKey))
	defer other.Close()
	w4, _ := witness.Parse(other.URL)
	if _, o, err := w4.Add(ctx, tr, sign(tr)); o != witness.Refused || err == nil {
		t.Fatalf("a witness of another log: %v %v", o, err)
	}
	// A cosignature by another key than the witness's configured one.
	impostor := witnesstest.New(t, key.VerifierKey())
	imp := httptest.NewServer(impostor)
	defer imp.Close()
	w5, _ := witness.Parse(tw.VKey + " " + imp.URL)
	if _, o, err := w5.Add(ctx, tr, sign(tr)); o != witness.Failed || !strings.Contains(err.Error(), "cosignature") {
		t.Fatalf("a cosignature by another key: %v %v", o, err)
	}
	for _, bad := range []string{"", "ftp://x", "a b c", "notakey http://x"} {
		if _, err := witness.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// A witness that does not answer holds up neither /readyz (Status) nor
// anything else while its request is in flight.
func TestStatusWhileAWitnessHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	w, err := witness.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := audit.LoadCheckpointKey(filepath.Join(t.TempDir(), "k"), audit.Origin("install-1"))
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrail(records(0, 3, "a"))
	msg, _ := key.Sign(tr.tree.Size(), tr.tree.Root())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Add(ctx, tr, audit.Checkpoint{Size: tr.tree.Size(), Root: tr.tree.Root(), Note: msg})
	time.Sleep(100 * time.Millisecond) // the request is in flight
	got := make(chan witness.Status, 1)
	go func() { got <- w.Status() }()
	select {
	case st := <-got:
		if st.URL != srv.URL {
			t.Fatalf("status %+v", st)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Status waited for the witness's answer")
	}
}
