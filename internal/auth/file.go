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

	"github.com/licenseledger/ledger/internal/secfile"
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
// The file must belong to the user reading it and not be accessible by
// group or others (mode 0600 or 0400).
//
// The file is read line by line and fails closed: a broken line (malformed,
// or one of two lines with the same name or the same token, which leave
// the meaning open) grants nothing while the valid lines stay in force; an
// unsafe or unreadable file grants nothing at all.

// Errors of tokens-file edits.
var (
	ErrDuplicateName = errors.New("a token with this name already exists")
	ErrUnknownName   = errors.New("no token has this name")
	// ErrInsecureFile is a tokens file that group or others may access, or
	// that belongs to another user than the one reading it.
	ErrInsecureFile = errors.New("unsafe tokens file")
)

// Kinds of tokens-file problems, as logs and metrics name them.
const (
	// ProblemMalformed is a line that is not a valid token line.
	ProblemMalformed = "malformed"
	// ProblemDuplicate is a line whose name or token another line has too.
	ProblemDuplicate = "duplicate"
	// ProblemInsecure is a file that is not private to its user
	// (ErrInsecureFile): none of its lines is trusted.
	ProblemInsecure = "insecure"
	// ProblemUnreadable is a file that cannot be read (not a regular file,
	// too large, an I/O error): none of its lines is trusted.
	ProblemUnreadable = "unreadable"
)

// ProblemKinds lists every kind of problem.
var ProblemKinds = []string{ProblemMalformed, ProblemDuplicate, ProblemInsecure, ProblemUnreadable}

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
	case RoleOrgAdmin, RoleAuditor, RoleReporter:
	default:
		return fmt.Errorf("role %q: want operator, org_admin, auditor or reporter", role)
	}
	if len(orgs) == 0 {
		return fmt.Errorf("an %s token needs at least one org", role)
	}
	if all {
		if role == RoleOrgAdmin {
			return errors.New(`an org_admin token names its orgs; "*" is for operators, auditors and reporters`)
		}
		return nil
	}
	for i, org := range orgs {
		switch {
		case org == "*":
			return errors.New(`"*" stands alone: it already means every org`)
		case org == license.InstanceOrg && role == RoleOrgAdmin:
			return fmt.Errorf("an org_admin token never covers %s (operators manage the install-wide license)", license.InstanceOrg)
		case org == license.InstanceOrg && role == RoleReporter:
			return fmt.Errorf("a reporter token never covers %s (usage is reported per org)", license.InstanceOrg)
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

// LineError is a broken tokens-file line. Its message never holds the
// line's hash.
type LineError struct {
	File string
	Line int
	Kind string // ProblemMalformed or ProblemDuplicate
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Parsed is the content of a tokens file, read line by line.
type Parsed struct {
	// Entries are the valid lines, in file order: the file's tokens.
	Entries []Entry
	// Broken are the broken lines, in file order; none of them grants
	// anything.
	Broken []*LineError

	lines []parsedLine // every token line, broken ones included
}

// parsedLine is one non-blank, non-comment line.
type parsedLine struct {
	at    int   // 0-based line index
	entry Entry // the entry its fields make, when they parse
	err   *LineError
}

// ParseLines parses the content of a tokens file line by line; file names
// it in errors. Blank and comment lines are skipped. Two lines with the
// same name, or the same token, are both broken: which one was meant is
// not for the reader to guess.
func ParseLines(file string, data []byte) Parsed {
	var (
		p      Parsed
		names  = map[string][]int{}
		hashes = map[[32]byte][]int{}
	)
	for i, raw := range strings.Split(string(data), "\n") {
		e, ok, err := parseLine(raw)
		if !ok && err == nil {
			continue
		}
		l := parsedLine{at: i, entry: e}
		if err != nil {
			l.err = &LineError{File: file, Line: i + 1, Kind: ProblemMalformed, Err: err}
		} else {
			names[e.Name] = append(names[e.Name], len(p.lines))
			hashes[e.Hash] = append(hashes[e.Hash], len(p.lines))
		}
		p.lines = append(p.lines, l)
	}
	// dup breaks every line of a group of two or more, each naming up to
	// three of the others (a group may be large: the cost stays linear).
	dup := func(group []int, what string) {
		if len(group) < 2 {
			return
		}
		for _, j := range group {
			if p.lines[j].err != nil {
				continue
			}
			var others []string
			for _, k := range group {
				if k != j && len(others) < 3 {
					others = append(others, fmt.Sprint(p.lines[k].at+1))
				}
			}
			if more := len(group) - 1 - len(others); more > 0 {
				others = append(others, fmt.Sprintf("%d more", more))
			}
			p.lines[j].err = &LineError{File: file, Line: p.lines[j].at + 1, Kind: ProblemDuplicate,
				Err: fmt.Errorf("%s is also on line %s: none of these lines is trusted", what, strings.Join(others, ", "))}
		}
	}
	for _, l := range p.lines {
		if l.err == nil {
			dup(names[l.entry.Name], fmt.Sprintf("name %q", l.entry.Name))
			dup(hashes[l.entry.Hash], "the same token")
		}
	}
	for _, l := range p.lines {
		if l.err != nil {
			p.Broken = append(p.Broken, l.err)
		} else {
			p.Entries = append(p.Entries, l.entry)
		}
	}
	return p
}

// Err is the first broken line, or nil.
func (p Parsed) Err() error {
	if len(p.Broken) == 0 {
		return nil
	}
	return p.Broken[0]
}

// ParseTokens parses the content of a tokens file, all of it or nothing:
// the error is the first broken line's *LineError.
func ParseTokens(file string, data []byte) ([]Entry, error) {
	p := ParseLines(file, data)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return p.Entries, nil
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
		return Entry{}, false, errors.New("the hash is not hex")
	}
	e.Role, e.Name = Role(f[1]), f[3]
	e.Orgs = strings.Split(f[2], ",")
	if err := e.Validate(); err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// ReadTokensFile reads and parses the tokens file at path, all of it or
// nothing: an unsafe file (ErrInsecureFile) or a broken line is an error.
// A missing file is an error wrapping fs.ErrNotExist.
func ReadTokensFile(path string) ([]Entry, error) {
	p, err := ReadLines(path)
	if err == nil {
		err = p.Err()
	}
	if err != nil {
		return nil, err
	}
	return p.Entries, nil
}

// ReadLines reads the tokens file at path and parses it line by line
// (ParseLines). The error is about the whole file: missing (wrapping
// fs.ErrNotExist), unsafe (ErrInsecureFile) or unreadable.
func ReadLines(path string) (Parsed, error) {
	data, _, err := readTokensFile(path)
	if err != nil {
		return Parsed{}, err
	}
	return ParseLines(path, data), nil
}

// ProblemOf is the kind of a file-level error of ReadLines:
// ProblemInsecure or ProblemUnreadable.
func ProblemOf(err error) string {
	if errors.Is(err, ErrInsecureFile) {
		return ProblemInsecure
	}
	return ProblemUnreadable
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
		return nil, info, fmt.Errorf("%w: %s has mode %04o, group or others may access it; run chmod 600 %s", ErrInsecureFile, path, info.Mode().Perm(), path)
	}
	if err := checkOwner(path, info); err != nil {
		return nil, info, err
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
// 0600, its other lines kept byte for byte; a file with a broken line is
// left alone and the line reported. A name already in the file is
// ErrDuplicateName.
func AddToken(path string, e Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	return editTokensFile(path, true, func(data []byte, p Parsed) ([]byte, error) {
		if err := p.Err(); err != nil {
			return nil, err
		}
		for _, old := range p.Entries {
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
// byte, and returns the removed entry. Broken lines do not stand in the way
// of a revocation: they are kept as they are, except lines naming the
// token twice, which all go. An unknown name is ErrUnknownName.
func RemoveToken(path, name string) (Entry, error) {
	var removed Entry
	err := editTokensFile(path, false, func(data []byte, p Parsed) ([]byte, error) {
		lines := bytes.SplitAfter(data, []byte("\n"))
		drop := map[int]bool{}
		for _, l := range p.lines {
			if (l.err == nil || l.err.Kind == ProblemDuplicate) && l.entry.Name == name {
				if len(drop) == 0 {
					removed = l.entry
				}
				drop[l.at] = true
			}
		}
		if len(drop) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrUnknownName, name)
		}
		var out []byte
		for i, line := range lines {
			if !drop[i] {
				out = append(out, line...)
			}
		}
		return out, nil
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
// fs.ErrNotExist and nothing is created. An unsafe file is not edited.
func editTokensFile(path string, create bool, edit func(data []byte, p Parsed) ([]byte, error)) error {
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
	out, err := edit(data, ParseLines(path, data))
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, out)
}

// WriteFileAtomic replaces path with data (secfile.WriteFile: a temporary
// file, mode 0600, synced and renamed over path), then syncs the directory
// so that the rename survives a crash. Readers see the old content or the
// new, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	if err := secfile.WriteFile(path, data); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
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
