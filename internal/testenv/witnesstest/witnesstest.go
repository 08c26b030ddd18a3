// Package witnesstest is a C2SP tlog-witness for tests, written from the
// spec, independent of the ledger's witness client.
package witnesstest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Witness is a C2SP tlog-witness for one log, written from the spec:
// it checks the log's signature and the consistency proof from the size it
// holds, cosigns (cosignature/v1), and answers 409 with its size when the
// request's old size is not its own, 422 when the proof fails.
type Witness struct {
	logKey note.Verifier
	signer note.Signer
	VKey   string

	mu   sync.Mutex
	size uint64
	root []byte
}

// New returns a witness of the log whose verifier key is logVKey, holding
// the empty tree; VKey is its own verifier key.
func New(t testing.TB, logVKey string) *Witness {
	skey, vkey, err := note.GenerateKey(nil, "witness.example")
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Witness{logKey: v, signer: s, VKey: vkey, root: rfc6962.DefaultHasher.EmptyRoot()}
}

// ServeHTTP answers POST /add-checkpoint.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	head, msg, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		http.Error(rw, "malformed", http.StatusBadRequest)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(head))
	sc.Scan()
	oldS, ok := strings.CutPrefix(sc.Text(), "old ")
	old, err := strconv.ParseUint(oldS, 10, 64)
	if !ok || err != nil {
		http.Error(rw, "malformed old", http.StatusBadRequest)
		return
	}
	var hashes [][]byte
	for sc.Scan() {
		h, err := base64.StdEncoding.DecodeString(sc.Text())
		if err != nil {
			http.Error(rw, "malformed proof", http.StatusBadRequest)
			return
		}
		hashes = append(hashes, h)
	}
	cp, _, _, err := log.ParseCheckpoint(msg, w.logKey.Name(), w.logKey)
	if err != nil {
		http.Error(rw, "not signed by a known log", http.StatusForbidden)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old > cp.Size {
		http.Error(rw, "old beyond size", http.StatusBadRequest)
		return
	}
	if old != w.size {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", w.size)
		return
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, cp.Size, hashes, w.root, cp.Hash); err != nil {
		http.Error(rw, "bad consistency proof", http.StatusUnprocessableEntity)
		return
	}
	text, _, _ := strings.Cut(string(msg), "\n\n")
	signed, err := note.Sign(&note.Note{Text: text + "\n"}, w.signer)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	_, sigs, _ := bytes.Cut(signed, []byte("\n\n"))
	w.size, w.root = cp.Size, cp.Hash
	rw.Write(sigs)
}

// Size is the size of the tree the witness holds.
func (w *Witness) Size() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Hold makes the witness hold a tree of size with root, as if it had
// cosigned it.
func (w *Witness) Hold(size uint64, root []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.size, w.root = size, root
}
