package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/license"
)

// The API client commands: status, upload, remove, invalidate and
// enforcement set. Each sends one request to a ledger's HTTP API and prints
// its answer. Exit codes: 0 on a 2xx answer (whatever the license status
// it reports), 2 for usage errors found before any request, 3 when the API
// answered 4xx (its code and message on stderr), 4 when the ledger could
// not be reached, timed out or answered 5xx.

// Help says that a status other than valid is still a successful read.
func (c *statusCmd) Help() string {
	return "A license that is missing, expired or invalid is still a successful read: exit 0.\n\n" + clientExitCodes
}

// orgFlag names the org a license command acts on.
type orgFlag struct {
	Org string `required:"" placeholder:"SLUG" help:"The org: a slug, or _instance for the instance-wide license."`
}

func (f *orgFlag) check() error {
	if f.Org != license.InstanceOrg && !license.ValidSlug(f.Org) {
		return cli.Usage("--org %q is neither an org slug (^[a-z0-9][a-z0-9-]{0,62}$) nor %s", f.Org, license.InstanceOrg)
	}
	return nil
}

func (f *orgFlag) query() url.Values { return url.Values{"org": {f.Org}} }

type statusCmd struct {
	clientFlags
	Org     string `placeholder:"SLUG" help:"The org: a slug, or _instance for the instance-wide license."`
	Install bool   `help:"Print the install's identity instead (install id, key ring fingerprint, enforcement, version)."`
}

func (c *statusCmd) Run(env *cli.Env) error {
	if c.Install {
		if c.Org != "" {
			return cli.Usage("give --org or --install, not both")
		}
		return c.send(env, apiRequest{method: http.MethodGet, path: "api/install"})
	}
	if c.Org == "" {
		return cli.Usage("--org is required (or --install)")
	}
	org := orgFlag{Org: c.Org}
	if err := org.check(); err != nil {
		return err
	}
	return c.send(env, apiRequest{method: http.MethodGet, path: "api/license", query: org.query()})
}

type uploadCmd struct {
	clientFlags
	orgFlag
	Force bool   `help:"Accept a license whose issued_at is older than the current one's (operators only)."`
	File  string `arg:"" placeholder:"FILE|-" help:"License file (compact key or license.json), or - for standard input; at most 65,536 bytes."`
}

func (c *uploadCmd) Run(env *cli.Env) error {
	if err := c.check(); err != nil {
		return err
	}
	body, err := cli.ReadInput(env, c.File, license.MaxInputSize)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return cli.Usage("%v", err) // names the file
	}
	if err != nil {
		return cli.Usage("%s: %v", inputName(c.File), err)
	}
	if len(body) > license.MaxInputSize {
		return cli.Usage("%s: larger than %d bytes", inputName(c.File), license.MaxInputSize)
	}
	q := c.query()
	if c.Force {
		q.Set("force", "true")
	}
	ctype := "text/plain"
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		ctype = "application/json"
	}
	return c.send(env, apiRequest{method: http.MethodPost, path: "api/license", query: q, body: body, contentType: ctype})
}

func inputName(path string) string {
	if path == "-" {
		return "standard input"
	}
	return path
}

type removeCmd struct {
	clientFlags
	orgFlag
}

func (c *removeCmd) Run(env *cli.Env) error {
	if err := c.check(); err != nil {
		return err
	}
	return c.send(env, apiRequest{method: http.MethodDelete, path: "api/license", query: c.query()})
}

type invalidateCmd struct {
	clientFlags
	orgFlag
	LicenseID string `name:"license-id" required:"" placeholder:"UUID" help:"The license id to revoke; an id the org never held is revoked pre-emptively."`
	Note      string `placeholder:"TEXT" help:"Why, recorded in the event (UTF-8, at most 1,024 bytes)."`
}

func (c *invalidateCmd) Run(env *cli.Env) error {
	if err := c.check(); err != nil {
		return err
	}
	if !isUUID(c.LicenseID) {
		return cli.Usage("--license-id %q is not a UUID (8-4-4-4-12 hex digits)", c.LicenseID)
	}
	body, err := json.Marshal(struct {
		LicenseID string `json:"license_id"`
		Note      string `json:"note"`
	}{c.LicenseID, c.Note})
	if err != nil {
		return err
	}
	return c.send(env, apiRequest{method: http.MethodPost, path: "api/license/invalidate", query: c.query(),
		body: body, contentType: "application/json"})
}

// isUUID accepts the 36-character textual form only, any case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

type enforcementCmd struct {
	Set enforcementSetCmd `cmd:"" help:"Set the install-wide enforcement mode (operators); prints {\"mode\": …}."`
}

type enforcementSetCmd struct {
	clientFlags
	Mode string `arg:"" enum:"on,off,auto" placeholder:"on|off|auto" help:"on: enforce; off: allow every request (audited); auto: off until the install first holds a license, then on for good."`
}

func (c *enforcementSetCmd) Run(env *cli.Env) error { return c.putMode(env, "api/enforcement", c.Mode) }

// putMode PUTs {"mode": mode} to an install-wide mode's endpoint.
func (f *clientFlags) putMode(env *cli.Env, path, mode string) error {
	body, err := json.Marshal(map[string]string{"mode": mode})
	if err != nil {
		return err
	}
	return f.send(env, apiRequest{method: http.MethodPut, path: path, body: body, contentType: "application/json"})
}
