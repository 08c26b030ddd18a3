package frontend

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/licenseledger/ledger/internal/secfile"
)

// SecretHeader carries the shared secret of /authz's callers
// (AuthzSecret). Only the proxy's auth request should carry it; the
// reverse proxy never forwards it upstream.
const SecretHeader = "X-Gatekeeper-Secret"

// MinSecretLen is the length, in bytes, below which a secret is refused.
const MinSecretLen = 16

// Secret is a shared secret kept in a file and compared in constant time.
// It is safe for concurrent use; Reload replaces it while requests are
// checked.
type Secret struct {
	path string
	sum  atomic.Pointer[[sha256.Size]byte]
}

// LoadSecret reads the secret in path: the file's content without its
// trailing newline, at least MinSecretLen bytes, in a file that no group
// or other user may read or write (chmod 600; links are followed).
func LoadSecret(path string) (*Secret, error) {
	s := &Secret{path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the file again. On error the secret in force stays.
func (s *Secret) Reload() error {
	raw, err := secfile.ReadFile(s.path, 1<<16)
	if err != nil {
		return err
	}
	v := strings.TrimRight(string(raw), "\r\n")
	if len(v) < MinSecretLen {
		return fmt.Errorf("%s: the secret is %d bytes; at least %d are needed (e.g. openssl rand -hex 32)", s.path, len(v), MinSecretLen)
	}
	sum := sha256.Sum256([]byte(v))
	s.sum.Store(&sum)
	return nil
}

// Match reports whether v is the secret. Both are hashed first, so the
// comparison takes the same time whatever v's length and content.
func (s *Secret) Match(v string) bool {
	sum := sha256.Sum256([]byte(v))
	return subtle.ConstantTimeCompare(sum[:], s.sum.Load()[:]) == 1
}
