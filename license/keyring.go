package license

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"filippo.io/edwards25519"
	"fmt"
	"os"
	"sort"
	"strings"
)

// BuiltinKeys holds vendor keys embedded at build time, in the
// LICENSE_PUBLIC_KEYS format ("kid:base64,kid2:base64"):
//
//	go build -ldflags "-X github.com/licenseledger/ledger/license.BuiltinKeys=k1:BASE64" ./cmd/...
var BuiltinKeys string

// Ring is an immutable set of trusted vendor public keys, by kid. It is safe
// for concurrent use.
type Ring struct {
	keys map[string]ed25519.PublicKey
	// points are the keys decoded, for batch verification (a key that is
	// not a valid point is absent: it verifies nothing).
	points      map[string]*edwards25519.Point
	fingerprint string
}

// RingConfig says where a ring's keys come from. Every source is optional;
// together they must not give one kid two different keys.
type RingConfig struct {
	// Env is the LICENSE_PUBLIC_KEYS value: "kid:base64,kid2:base64".
	Env string
	// File is the LICENSE_PUBLIC_KEYS_FILE path; it must not be writable by
	// group or others.
	File string
	// Builtin is keys embedded at build time. Defaults to BuiltinKeys when
	// NoBuiltin is false.
	NoBuiltin bool
}

// LoadRing builds a ring from cfg.
func LoadRing(cfg RingConfig) (*Ring, error) {
	b := ringBuilder{keys: map[string]ed25519.PublicKey{}}
	if !cfg.NoBuiltin {
		if err := b.addList("built-in keys", BuiltinKeys); err != nil {
			return nil, err
		}
	}
	if err := b.addList("LICENSE_PUBLIC_KEYS", cfg.Env); err != nil {
		return nil, err
	}
	if cfg.File != "" {
		if err := b.addFile(cfg.File); err != nil {
			return nil, err
		}
	}
	return b.ring(), nil
}

// NewRing builds a ring from keys already in memory (tests, tools).
func NewRing(keys map[string]ed25519.PublicKey) (*Ring, error) {
	b := ringBuilder{keys: map[string]ed25519.PublicKey{}}
	for kid, k := range keys {
		if err := b.add("argument", kid, k); err != nil {
			return nil, err
		}
	}
	return b.ring(), nil
}

// Len returns the number of trusted keys.
func (r *Ring) Len() int { return len(r.keys) }

// Kids returns the trusted key ids, sorted.
func (r *Ring) Kids() []string {
	kids := make([]string, 0, len(r.keys))
	for k := range r.keys {
		kids = append(kids, k)
	}
	sort.Strings(kids)
	return kids
}

// Key returns the public key of kid.
func (r *Ring) Key(kid string) (ed25519.PublicKey, bool) {
	k, ok := r.keys[kid]
	return k, ok
}

// Fingerprint identifies the ring's content: the lowercase hex SHA-256 of
// its "kid:base64\n" lines in kid order. Two processes trust the same keys
// exactly when their fingerprints are equal.
func (r *Ring) Fingerprint() string { return r.fingerprint }

type ringBuilder struct {
	keys map[string]ed25519.PublicKey
}

func (b *ringBuilder) ring() *Ring {
	r := &Ring{keys: b.keys, points: make(map[string]*edwards25519.Point, len(b.keys))}
	for kid, key := range b.keys {
		if p, err := new(edwards25519.Point).SetBytes(key); err == nil {
			r.points[kid] = p
		}
	}
	h := sha256.New()
	for _, kid := range r.Kids() {
		fmt.Fprintf(h, "%s:%s\n", kid, base64.StdEncoding.EncodeToString(r.keys[kid]))
	}
	r.fingerprint = hex.EncodeToString(h.Sum(nil))
	return r
}

func (b *ringBuilder) add(where, kid string, key ed25519.PublicKey) error {
	if !ValidKid(kid) {
		return fmt.Errorf("%s: kid %q must match [A-Za-z0-9_-]{1,64}", where, kid)
	}
	if len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("%s: key %q is not an Ed25519 public key", where, kid)
	}
	if old, ok := b.keys[kid]; ok && !old.Equal(key) {
		return fmt.Errorf("%s: kid %q is given two different keys", where, kid)
	}
	b.keys[kid] = key
	return nil
}

// addList adds "kid:base64" entries separated by commas.
func (b *ringBuilder) addList(where, list string) error {
	for _, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		kid, enc, ok := strings.Cut(entry, ":")
		if !ok {
			return fmt.Errorf("%s: entry %q is not kid:base64", where, entry)
		}
		key, err := decodeRawKey(strings.TrimSpace(enc))
		if err != nil {
			return fmt.Errorf("%s: key %q: %v", where, kid, err)
		}
		if err := b.add(where, strings.TrimSpace(kid), key); err != nil {
			return err
		}
	}
	return nil
}

// decodeRawKey accepts the 32 raw key bytes in standard base64 with or
// without padding, or in the URL alphabet.
func decodeRawKey(s string) (ed25519.PublicKey, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("decodes to %d bytes, an Ed25519 public key is 32", len(k))
			}
			return ed25519.PublicKey(k), nil
		}
	}
	return nil, fmt.Errorf("not base64")
}

// addFile reads a key file: "<kid> <base64>" (or "<kid>:<base64>") lines, or
// a "<kid>" line followed by a PEM "PUBLIC KEY" block; '#' starts a comment.
func (b *ringBuilder) addFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("LICENSE_PUBLIC_KEYS_FILE: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("LICENSE_PUBLIC_KEYS_FILE %s is writable by group or others (mode %04o): run chmod go-w %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("LICENSE_PUBLIC_KEYS_FILE: %w", err)
	}
	return b.addFileData(path, data)
}

func (b *ringBuilder) addFileData(path string, data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line, pemKid, pemStart := 0, "", 0
	var pemBuf bytes.Buffer
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		where := fmt.Sprintf("%s:%d", path, line)
		switch {
		case pemBuf.Len() > 0 || strings.HasPrefix(text, "-----BEGIN"):
			if pemKid == "" {
				return fmt.Errorf("%s: a PEM block must follow a line holding its kid", where)
			}
			if pemBuf.Len() == 0 {
				pemStart = line
			}
			pemBuf.WriteString(text + "\n")
			if strings.HasPrefix(text, "-----END") {
				key, err := decodePEMKey(pemBuf.Bytes())
				if err != nil {
					return fmt.Errorf("%s:%d: key %q: %v", path, pemStart, pemKid, err)
				}
				if err := b.add(where, pemKid, key); err != nil {
					return err
				}
				pemKid = ""
				pemBuf.Reset()
			}
		case text == "":
		default:
			if pemKid != "" {
				return fmt.Errorf("%s:%d: kid %q has no key after it", path, line-1, pemKid)
			}
			fields := strings.Fields(text)
			if len(fields) == 1 && strings.Contains(text, ":") {
				fields = strings.SplitN(text, ":", 2)
			}
			switch len(fields) {
			case 1:
				pemKid = fields[0]
			case 2:
				key, err := decodeRawKey(fields[1])
				if err != nil {
					return fmt.Errorf("%s: key %q: %v", where, fields[0], err)
				}
				if err := b.add(where, fields[0], key); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s: expected \"<kid> <base64>\" or \"<kid>\" before a PEM block", where)
			}
		}
	}
	if pemKid != "" {
		return fmt.Errorf("%s: kid %q has no key after it", path, pemKid)
	}
	return sc.Err()
}

func decodePEMKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("not a PEM PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("PEM key is %T, not Ed25519", pub)
	}
	return k, nil
}
