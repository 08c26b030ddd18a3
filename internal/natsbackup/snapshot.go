// Package natsbackup writes and restores JetStream snapshots of the stream
// (ledger backup and restore) in the format of `nats stream backup`. It
// uses jsm.go, which links nats-server: the gatekeeper must not import it.
package natsbackup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/jsm.go/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/secfile"
)

// The files of a stream backup directory: the JetStream snapshot exactly
// as `nats stream backup` writes it (so `nats stream restore` reads it),
// and the ledger's manifest.
const (
	SnapshotMetaFile = jsm.SnapshotMetaFile // backup.json: stream config and state
	SnapshotDataFile = jsm.SnapshotDataFile // stream.arc.s2: the store
	ManifestFile     = "manifest.json"
)

// SnapshotState is the state of the stream a snapshot holds.
type SnapshotState struct {
	Stream   string
	Created  time.Time
	FirstSeq uint64
	LastSeq  uint64
	Messages uint64
	Bytes    uint64
}

// Snapshot writes a consistent snapshot of stream into dir (created 0700
// when missing; it must not hold a snapshot yet) through the JetStream
// snapshot API ($JS.API.STREAM.SNAPSHOT.<stream>). The files are 0600 once
// it returns: the archive is written with the umask's mode, so dir should
// be 0700 (secfile.MkdirPrivate) to keep it private meanwhile. progress,
// if set, is called with the bytes received so far and the bytes expected.
func Snapshot(ctx context.Context, conn *natsbus.Conn, stream, dir string, progress func(done, total uint64)) (SnapshotState, error) {
	mgr, err := jsm.New(conn.NATS(), jsm.WithTimeout(30*time.Second))
	if err != nil {
		return SnapshotState{}, err
	}
	s, err := mgr.LoadStream(stream)
	if err != nil {
		return SnapshotState{}, fmt.Errorf("stream %s: %w", stream, wrapJSM(err))
	}
	var opts []jsm.SnapshotOption
	if progress != nil {
		opts = append(opts, jsm.SnapshotNotify(func(p jsm.SnapshotProgress) { progress(p.UncompressedBytesReceived(), p.BytesExpected()) }))
	}
	if _, err := s.SnapshotToDirectory(ctx, dir, opts...); err != nil {
		return SnapshotState{}, fmt.Errorf("snapshot of %s: %w", stream, wrapJSM(err))
	}
	if err := secfile.RestrictFiles(dir); err != nil {
		return SnapshotState{}, err
	}
	st, err := ReadSnapshotState(dir)
	if err != nil {
		return st, err
	}
	if info, err := s.Information(); err == nil {
		st.Created = info.Created
	}
	return st, nil
}

// ReadSnapshotState reads the stream name and state recorded in a snapshot
// directory's backup.json, after checking the archive is there too.
func ReadSnapshotState(dir string) (SnapshotState, error) {
	if _, err := jsm.SnapshotDataPath(dir); err != nil {
		return SnapshotState{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, SnapshotMetaFile))
	if err != nil {
		return SnapshotState{}, err
	}
	var meta struct {
		Config api.StreamConfig `json:"config"`
		State  api.StreamState  `json:"state"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return SnapshotState{}, fmt.Errorf("%s: %w", filepath.Join(dir, SnapshotMetaFile), err)
	}
	return SnapshotState{Stream: meta.Config.Name, FirstSeq: meta.State.FirstSeq, LastSeq: meta.State.LastSeq,
		Messages: meta.State.Msgs, Bytes: meta.State.Bytes}, nil
}

// Restore recreates the stream held in the snapshot directory dir through
// the JetStream restore API, as `nats stream restore` does. The server
// refuses a stream that exists; callers check first. progress, if set, is
// called with the bytes sent so far and the archive's size.
func Restore(ctx context.Context, conn *natsbus.Conn, dir string, progress func(done, total uint64)) (SnapshotState, error) {
	st, err := ReadSnapshotState(dir)
	if err != nil {
		return st, err
	}
	mgr, err := jsm.New(conn.NATS(), jsm.WithTimeout(30*time.Second))
	if err != nil {
		return st, err
	}
	var opts []jsm.SnapshotOption
	if progress != nil {
		var total uint64
		if fi, err := os.Stat(filepath.Join(dir, SnapshotDataFile)); err == nil {
			total = uint64(fi.Size())
		}
		opts = append(opts, jsm.RestoreNotify(func(p jsm.RestoreProgress) { progress(p.BytesSent(), total) }))
	}
	// No responder to the restore request means nothing started (a
	// cluster whose JetStream API is moving after a stream's removal, or
	// a leader change): ask again for a while, as the bus does for reads.
	// A cluster that cannot place the stream yet (a metadata leader just
	// elected that has not heard from every peer) is asked again too.
	deadline := time.Now().Add(noResponderPatience)
	var state *api.StreamState
	err = natsbus.RetryPlacement(ctx, func() error {
		for attempt := 0; ; attempt++ {
			var err error
			_, state, err = mgr.RestoreSnapshotFromDirectory(ctx, st.Stream, dir, opts...)
			if !errors.Is(err, nats.ErrNoResponders) || !time.Now().Before(deadline) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(min(25*time.Millisecond<<min(attempt, 6), time.Second)):
			}
		}
	})
	if err != nil {
		return st, fmt.Errorf("restore of %s: %w", st.Stream, wrapJSM(err))
	}
	st.FirstSeq, st.LastSeq, st.Messages, st.Bytes = state.FirstSeq, state.LastSeq, state.Msgs, state.Bytes
	return st, nil
}

// noResponderPatience bounds how long Restore asks again while its
// request has no responder.
const noResponderPatience = 5 * time.Second

// wrapJSM marks jsm.go's transport failures as unavailable.
func wrapJSM(err error) error {
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, context.DeadlineExceeded) {
		return wrapUnavailable(err)
	}
	return err
}

// wrapUnavailable marks err as events.ErrUnavailable unless it is a
// JetStream API error other than 503, as natsbus does.
func wrapUnavailable(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code != 503 {
		return err
	}
	return fmt.Errorf("%w: %v", events.ErrUnavailable, err)
}
