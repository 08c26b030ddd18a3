package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// TreeSource is a trail with a Merkle tree: the in-memory trail, or
// PostgreSQL's.
type TreeSource interface {
	TreeRows
	// TreeSize returns the number of records the tree covers and its root.
	TreeSize(ctx context.Context) (uint64, Hash, error)
}

// Checkpointer signs a checkpoint whenever the tree has grown, at most
// every Interval, and keeps every one it signs.
type Checkpointer struct {
	Key      *CheckpointKey
	Tree     TreeSource
	Store    Checkpoints
	Interval time.Duration
	Logger   *slog.Logger
	// OnSigned, if set, is called with each checkpoint signed (witnesses).
	OnSigned func(ctx context.Context, cp Checkpoint)
}

// SignNow signs a checkpoint of the tree as it is, unless the latest one
// kept already covers it; it returns the latest checkpoint and whether it
// signed it now.
func (c *Checkpointer) SignNow(ctx context.Context) (Checkpoint, bool, error) {
	size, root, err := c.Tree.TreeSize(ctx)
	if err != nil {
		return Checkpoint{}, false, err
	}
	latest, err := c.Store.Latest(ctx)
	switch {
	case errors.Is(err, ErrNoCheckpoint) && size == 0:
		return Checkpoint{}, false, nil // nothing to sign for yet
	case errors.Is(err, ErrNoCheckpoint):
	case err != nil:
		return Checkpoint{}, false, err
	case latest.Size == size && latest.Root == root:
		return latest, false, nil
	case latest.Size > size:
		// A store behind its checkpoints (a projector catching up): the
		// next tick signs once it has grown past them.
		return latest, false, nil
	}
	msg, err := c.Key.Sign(size, root)
	if err != nil {
		return Checkpoint{}, false, err
	}
	cp := Checkpoint{Size: size, Root: root, Note: msg, SignedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := c.Store.Add(ctx, cp); err != nil {
		return Checkpoint{}, false, err
	}
	return cp, true, nil
}

// Run signs at start and then every Interval until ctx ends. Failures are
// logged and retried at the next tick.
func (c *Checkpointer) Run(ctx context.Context) {
	interval := c.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cp, signed, err := c.SignNow(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.Logger.Warn("audit checkpoint not signed", "err", err)
		case signed:
			c.Logger.Info("audit checkpoint signed", "tree_size", cp.Size, "root", fmt.Sprintf("%x", cp.Root))
			if c.OnSigned != nil {
				c.OnSigned(ctx, cp)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FileCheckpoints keeps checkpoints in a file of JSON lines, appended and
// synced one at a time: the embedded default's store, in the data
// directory.
type FileCheckpoints struct {
	path string
	mu   sync.Mutex
	all  []Checkpoint // in the order signed
}

type checkpointLine struct {
	Size     uint64    `json:"tree_size"`
	Root     []byte    `json:"root_hash"`
	SignedAt time.Time `json:"signed_at"`
	Note     string    `json:"note"`
}

// OpenFileCheckpoints reads path (absent: none yet).
func OpenFileCheckpoints(path string) (*FileCheckpoints, error) {
	fc := &FileCheckpoints{path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fc, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var good int64
	for i, b := range lines {
		var l checkpointLine
		if err := json.Unmarshal(b, &l); err != nil || len(l.Root) != HashSize {
			if i < len(lines)-1 {
				return nil, fmt.Errorf("%s: line %d is not a checkpoint", path, i+1)
			}
			// Cut short by a crash while it was written, so never served:
			// dropped, so that the next one starts a line of its own.
			if err := os.Truncate(path, good); err != nil {
				return nil, err
			}
			break
		}
		good += int64(len(b)) + 1
		fc.all = append(fc.all, Checkpoint{Size: l.Size, Root: Hash(l.Root), SignedAt: l.SignedAt, Note: []byte(l.Note)})
	}
	return fc, nil
}

// Add implements Checkpoints.
func (fc *FileCheckpoints) Add(_ context.Context, cp Checkpoint) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if slices.ContainsFunc(fc.all, func(o Checkpoint) bool { return o.Size == cp.Size && o.Root == cp.Root }) {
		return nil
	}
	b, err := json.Marshal(checkpointLine{Size: cp.Size, Root: cp.Root[:], SignedAt: cp.SignedAt, Note: string(cp.Note)})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(fc.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", fc.path, err)
	}
	fc.all = append(fc.all, cp)
	return nil
}

// Latest implements Checkpoints.
func (fc *FileCheckpoints) Latest(context.Context) (Checkpoint, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.all) == 0 {
		return Checkpoint{}, ErrNoCheckpoint
	}
	return fc.all[len(fc.all)-1], nil
}

// BySize implements Checkpoints.
func (fc *FileCheckpoints) BySize(_ context.Context, size uint64) (Checkpoint, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i := len(fc.all) - 1; i >= 0; i-- {
		if fc.all[i].Size == size {
			return fc.all[i], nil
		}
	}
	return Checkpoint{}, ErrNoCheckpoint
}
