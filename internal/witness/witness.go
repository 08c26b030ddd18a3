// Package witness sends the install's signed checkpoints to witnesses
// (C2SP tlog-witness) and archives them with their cosignatures.
package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/licenseledger/ledger/internal/audit"
)

// Every checkpoint signed is sent to each configured witness
// with the C2SP tlog-witness add-checkpoint request, with a consistency
// proof from the size the witness last accepted. A witness cosigns what
// extends what it saw before and refuses anything else: a refusal on the
// proof (422) or a witness holding a larger tree than the install's (409
// with a size beyond the checkpoint) means the trail was forked or
// rewritten after the witness saw it. That is logged at error level,
// counted, and reported on /readyz until a later checkpoint is accepted.

// Witness is one witness: the URL its add-checkpoint endpoint is under, and
// optionally its verifier key, which checks its cosignatures.
type Witness struct {
	URL    string
	Key    note.Verifier // nil: cosignatures are kept without being checked
	client *http.Client

	mu   sync.Mutex // one add-checkpoint at a time
	size uint64     // the size it last accepted from this install

	// status is read by /readyz while a request may be in flight (up to
	// its timeout): it has a lock of its own, never held across I/O.
	statusMu sync.Mutex
	status   Status
}

// Status is what /readyz says of a witness.
type Status struct {
	URL      string    `json:"url"`
	Size     uint64    `json:"tree_size"`         // the size it last cosigned
	Fork     string    `json:"fork,omitempty"`    // why it refused: a fork or a rewrite
	Error    string    `json:"error,omitempty"`   // the last failure, other than a fork
	Cosigned time.Time `json:"cosigned,omitzero"` // when it last cosigned
}

// ParseWitness reads "URL" or "VKEY URL": the URL add-checkpoint is
// under, after the witness's verifier key when its cosignatures are to be
// checked.
func Parse(s string) (*Witness, error) {
	fields := strings.Fields(s)
	w := &Witness{client: &http.Client{Timeout: 30 * time.Second}}
	switch len(fields) {
	case 1:
		w.URL = fields[0]
	case 2:
		v, err := fnote.NewVerifierForCosignatureV1(fields[0])
		if err != nil {
			return nil, fmt.Errorf("witness %q: the verifier key: %w", s, err)
		}
		w.Key, w.URL = v, fields[1]
	default:
		return nil, fmt.Errorf("witness %q: want URL, or VKEY URL", s)
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness %q: not an http(s) URL", s)
	}
	w.URL = strings.TrimSuffix(u.String(), "/")
	w.status.URL = w.URL
	return w, nil
}

// Status returns what the witness last said.
func (w *Witness) Status() Status {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	return w.status
}

// Outcome is the result of one add-checkpoint.
type Outcome string

// The outcomes counted by ledger_audit_witness_requests_total.
const (
	Cosigned Outcome = "cosigned"
	Fork     Outcome = "fork"
	Refused  Outcome = "refused" // 403, 404, 400: the witness does not know this log
	Failed   Outcome = "failed"  // unreachable, 5xx, or a bad cosignature
)

// Add sends cp to the witness (after one retry from the size a 409
// names) and returns the cosignature lines it answered with.
func (w *Witness) Add(ctx context.Context, tree audit.TreeRows, cp audit.Checkpoint) ([]byte, Outcome, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for attempt := 0; ; attempt++ {
		old := w.size
		if old > cp.Size {
			old = 0 // nothing to prove from: let the witness say where it is
		}
		status, body, err := w.post(ctx, tree, old, cp)
		if err != nil {
			return w.failed(Failed, err)
		}
		switch {
		case status == http.StatusOK:
			if err := w.checkCosignature(cp, body); err != nil {
				return w.failed(Failed, err)
			}
			w.size = cp.Size
			w.statusMu.Lock()
			w.status = Status{URL: w.URL, Size: cp.Size, Cosigned: time.Now().UTC()}
			w.statusMu.Unlock()
			return body, Cosigned, nil
		case status == http.StatusConflict && attempt == 0:
			size, err := strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64)
			if err != nil {
				return w.failed(Failed, fmt.Errorf("a 409 without the witness's size: %.100q", body))
			}
			if size > cp.Size {
				return w.failed(Fork, fmt.Errorf("the witness holds a tree of size %d from this install, "+
					"larger than the checkpoint of size %d: the trail was rewound or forked since", size, cp.Size))
			}
			w.size = size
		case status == http.StatusUnprocessableEntity:
			return w.failed(Fork, fmt.Errorf("the witness rejects the consistency proof from size %d to %d: "+
				"the trail it saw before is not a prefix of this one (a fork, or a rewrite)", old, cp.Size))
		case status == http.StatusForbidden || status == http.StatusNotFound || status == http.StatusBadRequest:
			return w.failed(Refused, fmt.Errorf("the witness answers %d (%.200s): is this install's verifier key configured there?",
				status, strings.TrimSpace(string(body))))
		default:
			return w.failed(Failed, fmt.Errorf("the witness answers %d: %.200s", status, strings.TrimSpace(string(body))))
		}
	}
}

func (w *Witness) failed(o Outcome, err error) ([]byte, Outcome, error) {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	if o == Fork {
		w.status.Fork = err.Error()
	} else {
		w.status.Error = err.Error()
	}
	return nil, o, err
}

// post sends one add-checkpoint request: "old N", the consistency proof
// from N, a blank line, the signed checkpoint.
func (w *Witness) post(ctx context.Context, tree audit.TreeRows, old uint64, cp audit.Checkpoint) (int, []byte, error) {
	proof, err := audit.ConsistencyProof(ctx, tree, old, cp.Size)
	if err != nil {
		return 0, nil, fmt.Errorf("consistency proof from %d: %w", old, err)
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", old)
	for _, h := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	body.WriteString("\n")
	body.Write(cp.Note)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, w.URL+"/add-checkpoint", &body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}

// checkCosignature checks, when the witness's key is known, that lines is
// its cosignature of cp.
func (w *Witness) checkCosignature(cp audit.Checkpoint, lines []byte) error {
	if w.Key == nil {
		return nil
	}
	text, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
	cosigned := append(append(append([]byte(nil), text...), "\n\n"...), lines...)
	if _, err := note.Open(cosigned, note.VerifierList(w.Key)); err != nil {
		return fmt.Errorf("the witness's answer is not its cosignature of the checkpoint: %w", err)
	}
	return nil
}

// Sender sends each checkpoint to the witnesses and keeps a copy of it,
// with the cosignatures it got, in Archive when set.
type Sender struct {
	Witnesses []*Witness
	Tree      audit.TreeRows
	Archive   string // a directory: one file per checkpoint, the note and its cosignatures
	Logger    *slog.Logger
	// Count, if set, is called with each witness's outcome.
	Count func(witness string, outcome Outcome)
}

// Send is the Checkpointer's OnSigned: it sends cp to every witness, one
// after the other, and archives it.
func (s *Sender) Send(ctx context.Context, cp audit.Checkpoint) {
	cosigned := append([]byte(nil), cp.Note...)
	for _, w := range s.Witnesses {
		lines, outcome, err := w.Add(ctx, s.Tree, cp)
		if s.Count != nil {
			s.Count(w.URL, outcome)
		}
		switch outcome {
		case Cosigned:
			cosigned = append(cosigned, lines...)
			s.Logger.Info("audit checkpoint witnessed", "witness", w.URL, "tree_size", cp.Size)
		case Fork:
			s.Logger.Error("AUDIT WITNESS REFUSED THE CHECKPOINT: the audit trail may have been forked or rewritten",
				"witness", w.URL, "tree_size", cp.Size, "err", err)
		default:
			s.Logger.Warn("audit checkpoint not witnessed", "witness", w.URL, "tree_size", cp.Size, "outcome", outcome, "err", err)
		}
	}
	if s.Archive != "" {
		if err := archiveCheckpoint(s.Archive, cp, cosigned); err != nil {
			s.Logger.Warn("audit checkpoint not archived", "dir", s.Archive, "err", err)
		}
	}
}

// Statuses returns every witness's status.
func (s *Sender) Statuses() []Status {
	out := make([]Status, 0, len(s.Witnesses))
	for _, w := range s.Witnesses {
		out = append(out, w.Status())
	}
	return out
}

// archiveCheckpoint writes the cosigned note as DIR/<size>-<root
// prefix>.checkpoint, atomically.
func archiveCheckpoint(dir string, cp audit.Checkpoint, cosigned []byte) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	name := filepath.Join(dir, fmt.Sprintf("%012d-%x.checkpoint", cp.Size, cp.Root[:4]))
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(cosigned)
	if serr := tmp.Sync(); err == nil {
		err = serr
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o640)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
