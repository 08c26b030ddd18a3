// Package strictjson checks what encoding/json lets through: invalid UTF-8,
// trailing data, duplicate keys, and keys that differ only in case from the
// ones a decoder expects (encoding/json would match them silently).
//
// The check is one pass over the input that allocates nothing for the
// usual object (a few dozen keys without escapes): readers run it on every
// stream message and every license they verify.
package strictjson

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// CheckObject enforces what encoding/json does not: the input is valid
// UTF-8, one JSON object and nothing after it, no object at any depth has a
// duplicate key, and no top-level key differs only in case from a known key
// (encoding/json would silently match it). Unknown keys are allowed. Keys
// are compared as encoding/json decodes them ("a" and "\u0061" are the
// same key).
func CheckObject(data []byte, known []string) error {
	return CheckMembers(data, known, nil)
}

// CheckMembers is CheckObject that also hands each top-level member, in
// order, to member (when not nil): its key, unescaped, valid only during
// the call, and its value's bytes, a sub-slice of data. Members are handed
// over as the scan goes, so an error found further on still fails the
// check: use what member saw only when CheckMembers returns nil.
func CheckMembers(data []byte, known []string, member func(key, value []byte)) error {
	s := scanner{data: data, known: known}
	err := s.document(member)
	if err != nil && !utf8.Valid(data) {
		return errNotUTF8
	}
	return err
}

var (
	errNotUTF8   = errors.New("not valid UTF-8")
	errNotObject = errors.New("not a JSON object")
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 32

// mapAfter is how many keys an object may have before its duplicate
// check moves from comparing each new key with the previous ones to a
// map, so that a hostile object with many keys costs linear time.
const mapAfter = 16

type scanner struct {
	data  []byte
	pos   int
	known []string
}

func (s *scanner) document(member func(key, value []byte)) error {
	s.space()
	if s.pos == len(s.data) {
		return errors.New("not JSON: unexpected end of input")
	}
	if c := s.data[s.pos]; c != '{' {
		// Another JSON value, or not JSON at all?
		if c == '[' {
			return errNotObject
		}
		if err := s.value(1); err != nil {
			return err
		}
		return errNotObject
	}
	s.pos++
	if err := s.object(1, member); err != nil {
		return err
	}
	s.space()
	if s.pos != len(s.data) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// syntax is the error for the byte at pos (or the end of the input).
func (s *scanner) syntax() error {
	if s.pos >= len(s.data) {
		return errors.New("not JSON: unexpected end of input")
	}
	return fmt.Errorf("not JSON: invalid character %q at offset %d", s.data[s.pos], s.pos)
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// object scans the members of an object whose '{' was consumed, through
// its '}'. depth is the object's own depth (the document is 1); member,
// if not nil, receives each member.
func (s *scanner) object(depth int, member func(key, value []byte)) error {
	var few [mapAfter][]byte // the keys so far, until a map takes over
	n := 0
	var many map[string]bool
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.syntax()
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		if many == nil {
			for _, k := range few[:n] {
				if string(k) == string(key) {
					return fmt.Errorf("duplicate key %q", string(key))
				}
			}
			if n < mapAfter {
				few[n] = key
				n++
			} else {
				many = make(map[string]bool, 2*mapAfter)
				for _, k := range few {
					many[string(k)] = true
				}
			}
		}
		if many != nil {
			if many[string(key)] {
				return fmt.Errorf("duplicate key %q", string(key))
			}
			many[string(key)] = true
		}
		if depth == 1 {
			if err := s.knownCase(key); err != nil {
				return err
			}
		}
		s.space()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.syntax()
		}
		s.pos++
		s.space()
		from := s.pos
		if err := s.value(depth); err != nil {
			return err
		}
		if member != nil {
			member(key, s.data[from:s.pos:s.pos])
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.syntax()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.space()
		case '}':
			s.pos++
			return nil
		default:
			return s.syntax()
		}
	}
}

// knownCase rejects a top-level key that differs only in case from a
// known one.
func (s *scanner) knownCase(key []byte) error {
	for _, k := range s.known {
		if string(key) == k {
			return nil
		}
	}
	for _, k := range s.known {
		if strings.EqualFold(string(key), k) {
			return fmt.Errorf("key %q must be spelled %q", string(key), k)
		}
	}
	return nil
}

// array scans the elements of an array whose '[' was consumed.
func (s *scanner) array(depth int) error {
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		s.space()
		if s.pos >= len(s.data) {
			return s.syntax()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.space()
		case ']':
			s.pos++
			return nil
		default:
			return s.syntax()
		}
	}
}

// value scans one value inside a container at depth.
func (s *scanner) value(depth int) error {
	if s.pos >= len(s.data) {
		return s.syntax()
	}
	switch c := s.data[s.pos]; c {
	case '{', '[':
		if depth >= maxDepth {
			return fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
		s.pos++
		if c == '{' {
			return s.object(depth+1, nil)
		}
		return s.array(depth + 1)
	case '"':
		_, err := s.str()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return s.number()
}

func (s *scanner) literal(want string) error {
	if len(s.data)-s.pos < len(want) || string(s.data[s.pos:s.pos+len(want)]) != want {
		for i := range len(want) { // point at the first wrong byte
			if s.pos >= len(s.data) || s.data[s.pos] != want[i] {
				break
			}
			s.pos++
		}
		return s.syntax()
	}
	s.pos += len(want)
	return nil
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.data) && s.data[s.pos] == '0':
		s.pos++
	case s.digits() == 0:
		return s.syntax()
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.syntax()
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return s.syntax()
		}
	}
	return nil
}

func (s *scanner) digits() int {
	from := s.pos
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos - from
}

// key scans a string and returns it unescaped: a sub-slice of the input
// when it holds no escape.
func (s *scanner) key() ([]byte, error) {
	from := s.pos
	escaped, err := s.str()
	if err != nil {
		return nil, err
	}
	lit := s.data[from:s.pos]
	if !escaped {
		return lit[1 : len(lit)-1], nil
	}
	return appendUnquoted(nil, lit), nil
}

// str scans a string whose '"' is at pos, through its closing quote, and
// reports whether it holds an escape.
func (s *scanner) str() (escaped bool, err error) {
	s.pos++
	for s.pos < len(s.data) {
		// Most bytes are plain ASCII: skip them in a tight loop.
		for s.pos < len(s.data) && plain[s.data[s.pos]] {
			s.pos++
		}
		if s.pos >= len(s.data) {
			break
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return escaped, err
			}
		case c < 0x20:
			return escaped, s.syntax()
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, n := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && n == 1 {
				return escaped, errNotUTF8
			}
			s.pos += n
		}
	}
	return escaped, s.syntax()
}

// escape scans the escape sequence at pos.
func (s *scanner) escape() error {
	s.pos++
	if s.pos >= len(s.data) {
		return s.syntax()
	}
	switch s.data[s.pos] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.pos++
		return nil
	case 'u':
		s.pos++
		for range 4 {
			if s.pos >= len(s.data) || hexVal(s.data[s.pos]) < 0 {
				return s.syntax()
			}
			s.pos++
		}
		return nil
	}
	return s.syntax()
}

// plain marks the bytes a string holds as they are: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// Unquote returns the string a JSON string literal (quotes included)
// stands for, as encoding/json decodes it: escapes resolved, a lone or
// broken UTF-16 surrogate read as U+FFFD. lit must have passed a check of
// this package (CheckMembers hands out such values); other bytes give an
// error.
func Unquote(lit []byte) (string, error) {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return "", errors.New("not a JSON string")
	}
	inner := lit[1 : len(lit)-1]
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 {
			s := scanner{data: lit}
			if _, err := s.str(); err != nil || s.pos != len(lit) {
				return "", errors.New("not a JSON string")
			}
			return string(appendUnquoted(nil, lit)), nil
		}
	}
	if !utf8.Valid(inner) {
		return "", errNotUTF8
	}
	return string(inner), nil
}

// appendUnquoted appends the string a scanned literal stands for.
func appendUnquoted(dst, lit []byte) []byte {
	in := lit[1 : len(lit)-1]
	for i := 0; i < len(in); {
		c := in[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := in[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := u4(in[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(in) && in[i] == '\\' && in[i+1] == 'u' {
					r2 = u4(in[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

// u4 reads four hex digits (already checked).
func u4(b []byte) rune {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}
