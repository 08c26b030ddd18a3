package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/licenseledger/ledger/internal/secfile"
)

// ErrInsecureSeedFile is wrapped by the error for a seed file that users
// other than the owner could read or write. It is secfile.ErrExposed.
var ErrInsecureSeedFile = secfile.ErrExposed

// maxSeedFileSize bounds reads; a user seed is 58 characters.
const maxSeedFileSize = 4096

// SeedPath is where the seed of role is kept inside dir ($DATA_DIR/nats).
func SeedPath(dir string, role Role) string {
	return filepath.Join(dir, string(role)+".nk")
}

// Seeds are the identities of an embedded server's users.
type Seeds struct {
	Ledger, Reader, Admin Identity
}

// LoadOrCreateSeeds returns the ledger, reader and admin identities stored
// in dir/ledger.nk, dir/reader.nk and dir/admin.nk, generating any missing
// one (a directory written before the admin identity existed gets its
// admin.nk here). The directory is created with mode 0700 (an existing one
// wider than that is set to 0700: it is the seeds') and new files with
// 0600; existing files that group or others may access are refused rather
// than fixed, because the secret may already have leaked.
func LoadOrCreateSeeds(dir string) (Seeds, error) {
	if _, err := secfile.MkdirPrivate(dir); err != nil {
		return Seeds{}, fmt.Errorf("natsauth: create seed directory: %w", err)
	}
	var s Seeds
	for role, id := range map[Role]*Identity{RoleLedger: &s.Ledger, RoleReader: &s.Reader, RoleAdmin: &s.Admin} {
		var err error
		if *id, err = loadOrCreate(dir, role); err != nil {
			return Seeds{}, err
		}
	}
	return s, nil
}

func loadOrCreate(dir string, role Role) (Identity, error) {
	id, err := LoadIdentity(SeedPath(dir, role), role)
	if errors.Is(err, fs.ErrNotExist) {
		return createSeedFile(dir, role)
	}
	return id, err
}

// LoadIdentity reads the seed file at path, as written by LoadOrCreateSeeds
// or `nk -gen user`: the seed text and an optional trailing newline. A seed
// does not record its role; role only labels the returned Identity. A file
// that group or others may access is refused with an error wrapping
// ErrInsecureSeedFile; links are followed (see secfile).
func LoadIdentity(path string, role Role) (Identity, error) {
	raw, err := secfile.ReadFile(path, maxSeedFileSize)
	if errors.Is(err, ErrInsecureSeedFile) {
		return Identity{}, fmt.Errorf("natsauth: seed %w, and consider rotating the key", err)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: read seed: %w", err)
	}
	id, err := IdentityFromSeed(role, trimNewline(raw))
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// createSeedFile writes a new seed through a temporary file so a crash never
// leaves a truncated seed behind. The final name is claimed with a hard link,
// which fails if the file exists: when two processes start at once, both end
// up with the first one's seed instead of one silently overwriting the other.
func createSeedFile(dir string, role Role) (Identity, error) {
	id, err := GenerateIdentity(role)
	if err != nil {
		return Identity{}, err
	}
	tmp, err := writeTemp(dir, role, append(bytes.Clone(id.Seed), '\n'))
	if err != nil {
		return Identity{}, err
	}
	defer os.Remove(tmp)
	path := SeedPath(dir, role)
	err = os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return LoadIdentity(path, role)
	}
	if err != nil {
		// Some file systems have no hard links; rename is still atomic.
		if err := os.Rename(tmp, path); err != nil {
			return Identity{}, fmt.Errorf("natsauth: install %s seed: %w", role, err)
		}
	}
	return id, syncDir(dir)
}

func writeTemp(dir string, role Role, content []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+string(role)+".nk-*")
	if err != nil {
		return "", fmt.Errorf("natsauth: write %s seed: %w", role, err)
	}
	err = writeAndClose(f, content)
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("natsauth: write %s seed: %w", role, err)
	}
	return f.Name(), nil
}

func writeAndClose(f *os.File, content []byte) error {
	// CreateTemp already uses 0600; Chmod guards against a future change of
	// that default.
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(content)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// syncDir makes the new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("natsauth: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("natsauth: sync %s: %w", dir, err)
	}
	return nil
}
