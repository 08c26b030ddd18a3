// Package auth authenticates API callers by bearer token and says what
// each role may do. Tokens are stored and compared as SHA-256 hashes: the
// comparison is constant-time and a leaked tokens file reveals no token.
//
// The live set (Tokens) is the admin tokens (AdminSet) plus the valid
// entries of the tokens file (ReadLines, AddToken, RemoveToken), which a
// Watcher re-reads while the server runs, failing closed: a broken line or
// an unsafe file grants nothing, never leaving an earlier version in force.
// Tokens also holds the per-token rate limit (Limiter).
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
	"time"

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
	// RoleReporter may only report its orgs' usage (PUT /api/usage): what
	// a platform's seat counter holds.
	RoleReporter Role = "reporter"
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
	if (p.Role == RoleOrgAdmin || p.Role == RoleReporter) && org == license.InstanceOrg {
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
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// NewSet returns the set of the tokens file's entries.
func NewSet(entries []Entry) *Set {
	s := &Set{entries: make([]Principal, 0, len(entries))}
	for _, e := range entries {
		s.entries = append(s.entries, e.Principal())
	}
	return s
}

// Union returns a set holding the tokens of every set, in order: a token in
// two sets authenticates as its first entry.
func Union(sets ...*Set) *Set {
	u := &Set{}
	for _, s := range sets {
		if s != nil {
			u.entries = append(u.entries, s.entries...)
		}
	}
	return u
}

// Tokens is the live token set, swapped atomically when its sources
// change, with the per-token rate limit. It is safe for concurrent use.
type Tokens struct {
	cur     atomic.Pointer[Set]
	limiter atomic.Pointer[Limiter]
}

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

// SetRateLimit limits every token to l from now on (the zero RateLimit:
// no limit), forgetting the budgets spent so far.
func (t *Tokens) SetRateLimit(l RateLimit) {
	if l.Unlimited() {
		t.limiter.Store(nil)
		return
	}
	t.limiter.Store(NewLimiter(l))
}

// Allow spends one request of p's budget. When the budget is spent it
// returns false and how long until the next request would be allowed.
func (t *Tokens) Allow(p *Principal) (ok bool, retryAfter time.Duration) {
	l := t.limiter.Load()
	if l == nil {
		return true, 0
	}
	return l.Allow(p.Hash, time.Now())
}

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
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("%s is readable by group or others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
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
