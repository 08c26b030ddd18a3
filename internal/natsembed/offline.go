package natsembed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/secfile"
)

// ErrStoreInUse is returned when another process (a running ledger serve)
// holds the embedded JetStream store.
var ErrStoreInUse = errors.New("the embedded NATS store is in use by another process (a running ledger serve?)")

// Offline is the embedded server started on a data directory for the
// maintenance commands (backup, restore, stream reseed) while ledger serve
// is stopped. It listens on no port and requires no credentials: only the
// process that started it can reach it, in-process. It holds the store
// lock a running ledger holds, so the two never share a store.
//
// It does not fsync every write (that costs a bulk reseed or restore some
// 20 times its speed): Close syncs the whole store once the server has
// stopped. What a crash before then loses is still in the source (the
// audit, the backup), and the command can run again.
type Offline struct {
	Server *server.Server
	dir    string
	unlock func()
}

// StartOffline starts the server on DataDir/nats, creating the directory
// when it is missing (a lost store) and setting it to 0700 (see storeDir).
// It fails with ErrStoreInUse when a ledger runs on it.
func StartOffline(dataDir string) (*Offline, error) {
	dir, _, err := storeDir(dataDir)
	if err != nil {
		return nil, err
	}
	unlock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "ledger-offline",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 1 << 20,
	})
	if err != nil {
		unlock()
		return nil, fmt.Errorf("embedded NATS on %s: %w", dir, err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		unlock()
		return nil, fmt.Errorf("embedded NATS on %s did not become ready within 30s", dir)
	}
	return &Offline{Server: s, dir: dir, unlock: unlock}, nil
}

// Connect opens an in-process connection.
func (o *Offline) Connect(name string) (*natsbus.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(o.Server), nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	return natsbus.NewConn(nc), nil
}

// Close stops the server, waits for it, syncs the store to disk and
// releases it. The error is the sync's.
func (o *Offline) Close() error {
	o.Server.Shutdown()
	o.Server.WaitForShutdown()
	defer o.unlock()
	return syncTree(o.dir)
}

// syncTree fsyncs every file and directory under dir. What vanishes
// meanwhile (a deleted stream's directory, which the server removes in
// the background) is skipped.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
		return nil
	})
}

// storeDir creates dataDir/nats, the JetStream store and the seeds, mode
// 0700, or sets an existing one to 0700 when group or others may access
// it: the directory is the product's own. was is the mode it had then.
func storeDir(dataDir string) (dir string, was fs.FileMode, err error) {
	dir = filepath.Join(dataDir, "nats")
	was, err = secfile.MkdirPrivate(dir)
	return dir, was, err
}
