package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/secfile"
	"github.com/licenseledger/ledger/license"
)

type signCmd struct {
	Key     string `required:"" env:"LICENSEGEN_KEY" placeholder:"FILE" help:"Private key file (PKCS#8 PEM) from keygen or openssl genpkey -algorithm ed25519; refused unless only its owner may read it (chmod 600)."`
	Kid     string `env:"LICENSEGEN_KID" help:"Key id; default: from the .pub file beside the key, else the key file's name."`
	Payload string `arg:"" optional:"" placeholder:"PAYLOAD.json" help:"Payload JSON file, or - for standard input. license_id and issued_at are filled in when absent. Not with the payload flags."`
	Format  string `enum:"compact,json" default:"compact" help:"Output form: compact key or license.json."`
	Output  string `short:"o" placeholder:"FILE" help:"Write the license to FILE (mode 0600) instead of standard output."`

	Org        string   `placeholder:"SLUG" help:"Org slug the license is for; * for instance-wide."`
	Customer   string   `help:"Customer name."`
	Tier       string   `enum:",starter,professional,enterprise" default:"" placeholder:"TIER" help:"starter, professional or enterprise."`
	Products   []string `sep:"," help:"Products, comma-separated."`
	Features   []string `sep:"," help:"Licensed features, comma-separated."`
	Expires    string   `placeholder:"TIME" help:"Expiry: RFC 3339, or +N followed by d, h, m or s (relative to issued_at)."`
	NotBefore  string   `placeholder:"TIME" help:"Start: RFC 3339, or +N[dhms] relative to issued_at."`
	IssuedAt   string   `placeholder:"TIME" help:"Issue time, RFC 3339; default now."`
	LicenseID  string   `placeholder:"UUID" help:"License id; default a new UUIDv7."`
	UsersLimit *int     `help:"Users limit; 0 or absent = unlimited."`
	GraceDays  *int     `help:"Grace days after expiry, 0..365; absent = the install's default (7)."`
	InstallID  string   `placeholder:"UUID" help:"Bind the license to one install id (ledger status --install prints it)."`
}

func (c *signCmd) Run(env *cli.Env) error {
	priv, err := loadPrivateKey(c.Key)
	if err != nil {
		return err
	}
	kid, err := resolveKid(c.Kid, c.Key, priv)
	if err != nil {
		return err
	}
	payload, err := c.payload(env)
	if err != nil {
		return err
	}
	l, err := license.Sign(priv, kid, payload)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	out := []byte(l.Key + "\n")
	if c.Format == "json" {
		out = l.EncodeJSON()
	}
	if c.Output != "" {
		return writeOutput(c.Output, out)
	}
	_, err = env.Stdout.Write(out)
	return err
}

func (c *signCmd) usesFlags() bool {
	return c.Org != "" || c.Customer != "" || c.Tier != "" || c.Products != nil || c.Features != nil ||
		c.Expires != "" || c.NotBefore != "" || c.UsersLimit != nil || c.GraceDays != nil || c.InstallID != ""
}

// payload builds the payload bytes from the file or from the flags.
func (c *signCmd) payload(env *cli.Env) ([]byte, error) {
	issued := env.Now().UTC().Truncate(time.Second)
	if c.IssuedAt != "" {
		t, err := time.Parse(time.RFC3339, c.IssuedAt)
		if err != nil {
			return nil, cli.Usage("--issued-at: %v", err)
		}
		issued = t.UTC()
	}
	id := c.LicenseID
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		id = u.String()
	}
	if c.Payload != "" {
		if c.usesFlags() {
			return nil, cli.Usage("give either a payload file or payload flags, not both")
		}
		data, err := cli.ReadInput(env, c.Payload, license.MaxInputSize)
		if err != nil {
			return nil, err
		}
		return fillPayload(data, id, issued)
	}
	return c.flagPayload(id, issued)
}

// flagPayload is the payload from flags, keys in the contract's order.
func (c *signCmd) flagPayload(id string, issued time.Time) ([]byte, error) {
	if c.Org == "" || c.Customer == "" || c.Tier == "" || c.Expires == "" {
		return nil, cli.Usage("--org, --customer, --tier and --expires are required without a payload file")
	}
	expires, err := parseWhen("--expires", c.Expires, issued)
	if err != nil {
		return nil, err
	}
	if !issued.Before(expires) {
		from := "--issued-at " + rfc3339(issued)
		if c.IssuedAt == "" {
			from = "issued_at, now (" + rfc3339(issued) + ") without --issued-at"
		}
		return nil, cli.Usage("--expires %s is not after %s: give a later --expires (e.g. +365d, counted from issued_at) "+
			"or an earlier --issued-at", rfc3339(expires), from)
	}
	p := struct {
		LicenseID  string   `json:"license_id"`
		Customer   string   `json:"customer"`
		OrgSlug    string   `json:"org_slug"`
		Tier       string   `json:"tier"`
		Products   []string `json:"products"`
		Features   []string `json:"features"`
		IssuedAt   string   `json:"issued_at"`
		NotBefore  string   `json:"not_before,omitempty"`
		Expires    string   `json:"expires"`
		UsersLimit *int     `json:"users_limit,omitempty"`
		GraceDays  *int     `json:"grace_days,omitempty"`
		InstallID  string   `json:"install_id,omitempty"`
	}{id, c.Customer, c.Org, c.Tier, nonNil(c.Products), nonNil(c.Features), rfc3339(issued), "",
		rfc3339(expires), c.UsersLimit, c.GraceDays, c.InstallID}
	if c.NotBefore != "" {
		nb, err := parseWhen("--not-before", c.NotBefore, issued)
		if err != nil {
			return nil, err
		}
		p.NotBefore = rfc3339(nb)
	}
	return json.Marshal(p)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseWhen reads an RFC 3339 time or "+N" with unit d, h, m or s after base.
func parseWhen(flag, s string, base time.Time) (time.Time, error) {
	if rest, ok := strings.CutPrefix(s, "+"); ok && len(rest) >= 2 {
		n, err := strconv.ParseUint(rest[:len(rest)-1], 10, 31)
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}[rest[len(rest)-1]]
		if err == nil && unit != 0 {
			return base.Add(time.Duration(n) * unit), nil
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, cli.Usage("%s %q: want RFC 3339 (2027-01-31T00:00:00Z) or +N[dhms] (+365d)", flag, s)
	}
	return t, nil
}

// fillPayload adds license_id and issued_at to a payload file that lacks
// them, keeping the vendor's bytes otherwise untouched.
func fillPayload(data []byte, id string, issued time.Time) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("payload file: %v", err)
	}
	var add []string
	if _, ok := m["license_id"]; !ok {
		add = append(add, fmt.Sprintf(`"license_id":%q`, id))
	}
	if _, ok := m["issued_at"]; !ok {
		add = append(add, fmt.Sprintf(`"issued_at":%q`, rfc3339(issued)))
	}
	data = bytes.TrimSpace(data)
	if len(add) == 0 {
		return data, nil
	}
	rest := bytes.TrimSpace(data[1:]) // after '{'
	sep := ","
	if rest[0] == '}' {
		sep = ""
	}
	return []byte("{" + strings.Join(add, ",") + sep + string(rest)), nil
}

// writeOutput writes the license to path, mode 0600 (a license is the
// customer's to hand out, not the world's).
func writeOutput(path string, data []byte) error {
	f, err := secfile.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// loadPrivateKey reads the vendor's private key, refusing a file that
// group or others may access: the key may already have leaked, and
// signing with it would hide that.
func loadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := secfile.ReadFile(path, 1<<16)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T key; licenses are signed with Ed25519", path, k)
	}
	return priv, nil
}

// resolveKid takes --kid, else the kid of the .pub file beside the key
// (which must hold this key's public half), else the key file's name.
func resolveKid(flag, keyPath string, priv ed25519.PrivateKey) (string, error) {
	if flag != "" {
		return flag, nil
	}
	base := strings.TrimSuffix(keyPath, filepath.Ext(keyPath))
	if f, err := os.Open(base + ".pub"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			kid, _, _ := strings.Cut(line, ":")
			ring, err := license.LoadRing(license.RingConfig{Env: line, NoBuiltin: true})
			if err != nil {
				return "", fmt.Errorf("%s.pub: %v", base, err)
			}
			if pub, _ := ring.Key(kid); !pub.Equal(priv.Public()) {
				return "", fmt.Errorf("%s.pub does not hold the public half of %s; pass --kid", base, keyPath)
			}
			return kid, nil
		}
	}
	kid := filepath.Base(base)
	if !license.ValidKid(kid) {
		return "", cli.Usage("cannot take a kid from the file name %q; pass --kid", keyPath)
	}
	return kid, nil
}
