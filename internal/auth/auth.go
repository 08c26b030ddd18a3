// Package auth authenticates API callers by bearer token and says what
// each role may do. Tokens are stored and compared as SHA-256 hashes: the
// comparison is constant-time and a leaked tokens file reveals no token.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// Role is what a token may do.
type Role string

// Roles.
const (
	RoleOperator Role = "operator"
	RoleOrgAdmin Role = "org_admin"
	RoleAuditor  Role = "auditor"
)

// MinTokenLength is the shortest token accepted.
const MinTokenLength = 32

// Principal is an authenticated caller.
type Principal struct {
	Name string // the token's name; "" for unnamed tokens
	Role Role
	// Orgs the principal may act on; nil or ["*"] means all (operators,
	// auditors with "*"). org_admin never covers _instance.
	Orgs []string
	Hash [32]byte
}

// Actor is how events attribute the principal: the token's name, else
// "token:" and the first 12 hex digits of its hash.
func (p *Principal) Actor() events.Actor {
	id := p.Name
	if id == "" {
		id = "token:" + hex.EncodeToString(p.Hash[:])[:12]
	}
	return events.Actor{Kind: string(p.Role), ID: id}
}

// CoversOrg reports whether the principal's org scope includes org.
func (p *Principal) CoversOrg(org string) bool {
	if p.Role == RoleOrgAdmin && org == license.InstanceOrg {
		return false
	}
	return p.Orgs == nil || slices.Contains(p.Orgs, "*") || slices.Contains(p.Orgs, org)
}

// Hash returns the SHA-256 of a token.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// Set is an immutable set of tokens.
type Set struct{ entries []Principal }

// Authenticate returns the principal of token, comparing hashes in
// constant time against every entry.
func (s *Set) Authenticate(token string) (*Principal, bool) {
	if s == nil || len(token) < MinTokenLength {
		return nil, false
	}
	h := Hash(token)
	var found *Principal
	for i := range s.entries {
		if subtle.ConstantTimeCompare(h[:], s.entries[i].Hash[:]) == 1 && found == nil {
			found = &s.entries[i]
		}
	}
	return found, found != nil
}

// Len returns the number of tokens.
func (s *Set) Len() int { return len(s.entries) }

// Tokens is the live token set, swapped atomically when its sources
// change. It is safe for concurrent use.
type Tokens struct{ cur atomic.Pointer[Set] }

// NewTokens returns a holder for set.
func NewTokens(set *Set) *Tokens {
	t := &Tokens{}
	t.cur.Store(set)
	return t
}

// Authenticate checks token against the current set.
func (t *Tokens) Authenticate(token string) (*Principal, bool) {
	return t.cur.Load().Authenticate(token)
}

// Store replaces the set.
func (t *Tokens) Store(set *Set) { t.cur.Store(set) }

// Current returns the current set.
func (t *Tokens) Current() *Set { return t.cur.Load() }

// AdminSet is the set holding operator tokens given directly (the
// LEDGER_ADMIN_TOKEN value, the generated admin.token).
func AdminSet(tokens ...string) (*Set, error) {
	s := &Set{}
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if len(tok) < MinTokenLength {
			return nil, fmt.Errorf("an operator token is %d characters; tokens are at least %d", len(tok), MinTokenLength)
		}
		s.entries = append(s.entries, Principal{Role: RoleOperator, Hash: Hash(tok)})
	}
	return s, nil
}

// Generate returns a new random token (64 hex characters).
func Generate() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// LoadOrCreateAdminToken returns the operator token kept in path, creating
// it (0600) when absent. created reports a new token.
func LoadOrCreateAdminToken(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < MinTokenLength {
			return "", false, fmt.Errorf("%s holds a token shorter than %d characters", path, MinTokenLength)
		}
		return tok, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	tok := Generate()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, err
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, err
	}
	return tok, true, f.Close()
}
