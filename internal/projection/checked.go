package projection

import (
	"sync"
	"sync/atomic"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// Checked holds the verification of uploaded keys done ahead of their
// fold (CheckUploads), by the upload message's stream sequence. A fold
// under a Trust carrying it takes an upload's outcome from it instead of
// verifying the key itself: the same outcome, each upload's key checked
// under the same ring and install id, with the signatures of a batch
// checked together. It is read-only once made, and safe for concurrent
// use.
type Checked struct {
	ring      *license.Ring
	installID string
	bySeq     map[uint64]checkedKey
}

// checkedKey is the outcome of verifying one upload's key for its org.
type checkedKey struct {
	key, org string
	l        *license.License
	err      error
}

// checkChunk is how many keys a worker verifies at a time: one batch
// equation (license.BatchMax).
const checkChunk = license.BatchMax

// CheckUploads verifies the keys of the uploads among msgs (valid
// envelopes on an org subject; other messages are left to the fold)
// under trust, as the fold would, on up to workers goroutines, the
// signatures of each chunk checked together (license.Ring.VerifyBatch,
// which gives Verify's results, forged keys included). It returns nil
// when msgs hold no upload.
func CheckUploads(trust Trust, msgs []*events.Message, workers int) *Checked {
	var todo []checkedKey
	var seqs []uint64
	for _, m := range msgs {
		env := m.Envelope
		if env == nil || env.Type != events.TypeUploaded || env.Schema > events.Schema ||
			!m.IsOrgSubject() || !events.ValidOrg(m.Org()) {
			continue
		}
		var d events.Uploaded
		if env.DecodeData(&d) != nil {
			continue // the fold records the error
		}
		todo, seqs = append(todo, checkedKey{key: d.Key, org: m.Org()}), append(seqs, m.Seq)
	}
	if len(todo) == 0 {
		return nil
	}
	chunks := (len(todo) + checkChunk - 1) / checkChunk
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(workers, chunks)) {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				part := todo[c*checkChunk : min((c+1)*checkChunk, len(todo))]
				keys, expects := make([][]byte, len(part)), make([]license.Expect, len(part))
				for i, k := range part {
					keys[i], expects[i] = []byte(k.key), license.Expect{Org: k.org, InstallID: trust.InstallID}
				}
				ls, errs := trust.Ring.VerifyBatch(keys, expects)
				for i := range part {
					part[i].l, part[i].err = ls[i], errs[i]
				}
			}
		})
	}
	wg.Wait()
	c := &Checked{ring: trust.Ring, installID: trust.InstallID, bySeq: make(map[uint64]checkedKey, len(todo))}
	for i, k := range todo {
		c.bySeq[seqs[i]] = k
	}
	return c
}

// outcome returns the checked outcome of the upload at seq of key for
// org; nil unless c holds it for that key and org under trust's ring and
// install id.
func (c *Checked) outcome(trust Trust, seq uint64, key, org string) *checkedKey {
	if c == nil || c.ring != trust.Ring || c.installID != trust.InstallID {
		return nil
	}
	k, ok := c.bySeq[seq]
	if !ok || k.key != key || k.org != org {
		return nil
	}
	return &k
}
