package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/licenseledger/ledger/license"
)

// The tokens file holds one token per line:
//
//	<sha256 hex of the token> <role> <orgs|*> <name>
//
// separated by spaces or tabs. A '#' starts a comment (names, roles, orgs and
// hashes never contain one); blank lines are ignored. Per role, the orgs
// field is:
//
//   - operator: "*" (operators cover every org and _instance);
//   - org_admin: a comma-separated list of org slugs, never "*" nor
//     _instance (the install-wide slot is the operators');
//   - auditor: "*" for every org, or a comma-separated list of org slugs,
//     _instance allowed.
//
// Names are unique, 1..64 characters of [A-Za-z0-9_.@-]; hashes are unique.
// The file must not be accessible by group or others (mode 0600 or 0400).

// Errors of tokens-file edits.
var (
	ErrDuplicateName = errors.New("a token with this name already exists")
	ErrUnknownName   = errors.New("no token has this name")
	ErrInsecureFile  = errors.New("the tokens file is accessible by group or others")
)

// maxTokensFileSize bounds reads of the tokens file (about 100,000 tokens).
const maxTokensFileSize = 16 << 20

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// ValidName reports whether name may name a token.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// Entry is one token of the tokens file.
type Entry struct {
	Hash [32]byte
	Role Role
	// Orgs is ["*"] for every org (always for operators), else the org
	// list in file order.
	Orgs []string
	Name string
}

// NewEntry returns the entry of token, checking the role's org rules and
// the name. Tokens are at least MinTokenLength characters.
func NewEntry(token string, role Role, orgs []string, name string) (Entry, error) {
	if len(token) < MinTokenLength {
		return Entry{}, fmt.Errorf("a token is at least %d characters", MinTokenLength)
	}
	e := Entry{Hash: Hash(token), Role: role, Orgs: orgs, Name: name}
	return e, e.Validate()
}

// Validate checks the entry's name and its role's org rules.
func (e Entry) Validate() error {
	if !ValidName(e.Name) {
		return fmt.Errorf("name %q: want 1..64 characters of A-Z a-z 0-9 _ . @ -", e.Name)
	}
	return checkOrgs(e.Role, e.Orgs)
}

func checkOrgs(role Role, orgs []string) error {
	all := len(orgs) == 1 && orgs[0] == "*"
	switch role {
	case RoleOperator:
		if !all {
			return errors.New(`an operator token covers every org: its orgs field is "*"`)
		}
		return nil
	case RoleOrgAdmin, RoleAuditor:
	default:
		return fmt.Errorf("role %q: want operator, org_admin or auditor", role)
	}
	if len(orgs) == 0 {
		return fmt.Errorf("an %s token needs at least one org", role)
	}
	if all {
		if role == RoleOrgAdmin {
			return errors.New(`an org_admin token names its orgs; "*" is for operators and auditors`)
		}
		return nil
	}
	for i, org := range orgs {
		switch {
		case org == "*":
			return errors.New(`"*" stands alone: it already means every org`)
		case org == license.InstanceOrg && role == RoleOrgAdmin:
			return fmt.Errorf("an org_admin token never covers %s (operators manage the install-wide license)", license.InstanceOrg)
		case org != license.InstanceOrg && !license.ValidSlug(org):
			return fmt.Errorf("org %q: want a slug (^[a-z0-9][a-z0-9-]{0,62}$)", org)
		case slices.Contains(orgs[:i], org):
			return fmt.Errorf("org %q is listed twice", org)
		}
	}
	return nil
}

// Line is the entry as a tokens-file line, without the newline.
func (e Entry) Line() string {
	return hex.EncodeToString(e.Hash[:]) + " " + string(e.Role) + " " + strings.Join(e.Orgs, ",") + " " + e.Name
}

// HashPrefix is the first 12 hex digits of the hash: how lists and actor
// ids show a token.
func (e Entry) HashPrefix() string { return hex.EncodeToString(e.Hash[:])[:12] }

// Principal is the caller the entry authenticates.
func (e Entry) Principal() Principal {
	return Principal{Name: e.Name, Role: e.Role, Orgs: slices.Clone(e.Orgs), Hash: e.Hash}
}

// LineError is a malformed tokens-file line.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ParseTokens parses the content of a tokens file; file names it in
// errors, which are *LineError for a bad line.
func ParseTokens(file string, data []byte) ([]Entry, error) {
	entries, _, err := parseTokens(file, data)
	return entries, err
}

// parseTokens also returns the 0-based line index of every entry.
func parseTokens(file string, data []byte) ([]Entry, []int, error) {
	var (
		entries []Entry
		at      []int
		names   = map[string]int{}
		hashes  = map[[32]byte]int{}
	)
	for i, raw := range strings.Split(string(data), "\n") {
		e, ok, err := parseLine(raw)
		if err == nil && ok {
			if prev, dup := names[e.Name]; dup {
				err = fmt.Errorf("name %q is already used on line %d", e.Name, prev)
			} else if prev, dup := hashes[e.Hash]; dup {
				err = fmt.Errorf("the same token is already on line %d", prev)
			}
		}
		if err != nil {
			return nil, nil, &LineError{File: file, Line: i + 1, Err: err}
		}
		if ok {
			names[e.Name], hashes[e.Hash] = i+1, i+1
			entries = append(entries, e)
			at = append(at, i)
		}
	}
	return entries, at, nil
}

// parseLine parses one line; ok is false for blank and comment lines.
func parseLine(raw string) (e Entry, ok bool, err error) {
	line, _, _ := strings.Cut(raw, "#")
	f := strings.Fields(line)
	if len(f) == 0 {
		return Entry{}, false, nil
	}
	if len(f) != 4 {
		return Entry{}, false, fmt.Errorf("want <sha256 hex> <role> <orgs|*> <name>, got %d field(s)", len(f))
	}
	if len(f[0]) != 2*sha256.Size {
		return Entry{}, false, fmt.Errorf("the hash is %d characters; a SHA-256 in hex is 64", len(f[0]))
	}
	if _, err := hex.Decode(e.Hash[:], []byte(f[0])); err != nil {
		return Entry{}, false, fmt.Errorf("the hash is not hex: %v", err)
	}
	e.Role, e.Name = Role(f[1]), f[3]
	e.Orgs = strings.Split(f[2], ",")
	if err := e.Validate(); err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// ReadTokensFile reads and parses the tokens file at path, refusing one
// that group or others may access. A missing file is an error wrapping
// fs.ErrNotExist.
func ReadTokensFile(path string) ([]Entry, error) {
	data, _, err := readTokensFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTokens(path, data)
}

// readTokensFile returns the content of the tokens file and the stat of
// the file it read, which is nil when the file could not be opened.
func readTokensFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// Checking the opened file, not the path, avoids racing a replacement.
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, info, fmt.Errorf("tokens file %s is not a regular file", path)
	}
	// Windows has no meaningful permission bits to check.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, info, fmt.Errorf("%w: %s has mode %04o; run chmod 600 on it", ErrInsecureFile, path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokensFileSize+1))
	if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxTokensFileSize {
		return nil, info, fmt.Errorf("tokens file %s is larger than %d bytes", path, maxTokensFileSize)
	}
	return data, info, nil
}

// AddToken appends e to the tokens file at path, creating it (and its
// directory, 0700) when absent. The file is rewritten atomically with mode
// 0600, its other lines kept byte for byte; a malformed file is left alone
// and reported. A name already in the file is ErrDuplicateName.
func AddToken(path string, e Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	return editTokensFile(path, true, func(data []byte, entries []Entry, _ []int) ([]byte, error) {
		for _, old := range entries {
			if old.Name == e.Name {
				return nil, fmt.Errorf("%w: %s", ErrDuplicateName, e.Name)
			}
			if old.Hash == e.Hash {
				return nil, fmt.Errorf("this token is already in the file as %s", old.Name)
			}
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		return append(data, e.Line()+"\n"...), nil
	})
}

// RemoveToken removes the token called name from the tokens file at path,
// rewriting it atomically (mode 0600) with its other lines kept byte for
// byte, and returns the removed entry. An unknown name is ErrUnknownName.
func RemoveToken(path, name string) (Entry, error) {
	var removed Entry
	err := editTokensFile(path, false, func(data []byte, entries []Entry, at []int) ([]byte, error) {
		i := slices.IndexFunc(entries, func(e Entry) bool { return e.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrUnknownName, name)
		}
		removed = entries[i]
		lines := bytes.SplitAfter(data, []byte("\n"))
		return bytes.Join(slices.Delete(lines, at[i], at[i]+1), nil), nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, fmt.Errorf("%w: %s (there is no tokens file at %s)", ErrUnknownName, name, path)
	}
	return removed, err
}

// editTokensFile runs edit on the current content of the tokens file under
// an exclusive lock, so concurrent edits do not lose each other's changes,
// and installs its result atomically. With create, a missing file (and
// directory) is empty content; without, it is an error wrapping
// fs.ErrNotExist and nothing is created.
func editTokensFile(path string, create bool, edit func(data []byte, entries []Entry, at []int) ([]byte, error)) error {
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
	} else if _, err := os.Stat(path); err != nil {
		return err
	}
	unlock, err := lockTokensFile(path)
	if err != nil {
		return err
	}
	defer unlock()
	data, _, err := readTokensFile(path)
	if create && errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return err
	}
	entries, at, err := parseTokens(path, data)
	if err != nil {
		return err
	}
	out, err := edit(data, entries, at)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, out)
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory, mode 0600, synced, then renamed over path, and the directory
// synced. Readers see the old content or the new, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// CreateTemp already uses 0600; Chmod guards against a future change of
	// that default.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
