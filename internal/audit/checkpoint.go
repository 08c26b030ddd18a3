package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Signed checkpoints: the tree's size and root hash in the C2SP
// tlog-checkpoint body (origin, size, base64 root, one per line), signed as
// a C2SP signed-note with the install's Ed25519 checkpoint key. The origin,
// which is also the key's name, names the install: Origin(installID).

// OriginPrefix begins every origin line of the install's checkpoints.
const OriginPrefix = "license-ledger/"

// Origin returns the origin line of the checkpoints of install id.
func Origin(installID string) string { return OriginPrefix + installID }

// Checkpoint is a signed tree head as stored: Note is the exact signed note.
type Checkpoint struct {
	Size     uint64
	Root     Hash
	Note     []byte
	SignedAt time.Time
}

// ErrNoCheckpoint is a checkpoint that was never signed.
var ErrNoCheckpoint = errors.New("audit: no such checkpoint")

// Checkpoints keeps every checkpoint ever signed: PostgreSQL's
// audit_checkpoints, or a file in the data directory.
type Checkpoints interface {
	// Add keeps cp; adding one already kept is not an error.
	Add(ctx context.Context, cp Checkpoint) error
	// Latest returns the checkpoint signed last (ErrNoCheckpoint: none).
	Latest(ctx context.Context) (Checkpoint, error)
	// BySize returns the checkpoint of size signed last (ErrNoCheckpoint:
	// none).
	BySize(ctx context.Context, size uint64) (Checkpoint, error)
}

// CheckpointKey signs the install's checkpoints.
type CheckpointKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

// LoadCheckpointKey reads the signer key in path (the note format,
// PRIVATE+KEY+name+hash+base64), creating it mode 0600 with name origin
// when the file does not exist. A key of another name (another install's)
// is an error.
func LoadCheckpointKey(path, origin string) (*CheckpointKey, bool, error) {
	created := false
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		skey, _, gerr := note.GenerateKey(rand.Reader, origin)
		if gerr != nil {
			return nil, false, gerr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		f, oerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if oerr != nil {
			return nil, false, fmt.Errorf("checkpoint key %s: %w", path, oerr)
		}
		_, werr := f.WriteString(skey + "\n")
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, false, fmt.Errorf("checkpoint key %s: %w", path, werr)
		}
		b, created = []byte(skey), true
	} else if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	k, err := ParseCheckpointKey(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	if k.Name() != origin {
		return nil, false, fmt.Errorf("checkpoint key %s is named %q, not this install's origin %q: it belongs to another install", path, k.Name(), origin)
	}
	return k, created, nil
}

// ParseCheckpointKey reads a signer key in the note format.
func ParseCheckpointKey(skey string) (*CheckpointKey, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, errors.New("not a note signer key (PRIVATE+KEY+name+hash+base64)")
	}
	vkey, err := verifierKeyOf(skey)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &CheckpointKey{signer: s, verifier: v, vkey: vkey}, nil
}

// verifierKeyOf derives the verifier key (name+hash+base64 of the public
// key) from a signer key.
func verifierKeyOf(skey string) (string, error) {
	// PRIVATE+KEY+name+hash+base64(alg ‖ seed)
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("not a note signer key")
	}
	seed, err := decodeKey(parts[4])
	if err != nil || len(seed) != 33 || seed[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	return note.NewEd25519VerifierKey(parts[2], ed25519Public(seed[1:]))
}

// Name is the key's name: the checkpoints' origin.
func (k *CheckpointKey) Name() string { return k.signer.Name() }

// VerifierKey is the key anyone verifies the checkpoints with, in the note
// format (name+hash+base64).
func (k *CheckpointKey) VerifierKey() string { return k.vkey }

// Sign returns the signed note of the checkpoint (size, root).
func (k *CheckpointKey) Sign(size uint64, root Hash) ([]byte, error) {
	body := log.Checkpoint{Origin: k.Name(), Size: size, Hash: root[:]}.Marshal()
	return note.Sign(&note.Note{Text: string(body)}, k.signer)
}

// OpenCheckpoint verifies a signed checkpoint note with the verifier key
// vkey (whose name is the origin) and returns its size and root hash.
func OpenCheckpoint(msg []byte, vkey string) (uint64, Hash, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return 0, Hash{}, fmt.Errorf("verifier key: %w", err)
	}
	cp, _, _, err := log.ParseCheckpoint(msg, v.Name(), v)
	if err != nil {
		return 0, Hash{}, fmt.Errorf("checkpoint: %w", err)
	}
	if len(cp.Hash) != HashSize {
		return 0, Hash{}, fmt.Errorf("checkpoint: a root hash of %d bytes", len(cp.Hash))
	}
	return cp.Size, Hash(cp.Hash), nil
}

func decodeKey(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func ed25519Public(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
