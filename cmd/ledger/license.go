package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/license"
)

type licenseCmd struct {
	Inspect licenseInspectCmd `cmd:"" help:"Print the status payload of a license; exits 0 whenever the input could be read."`
	Verify  licenseVerifyCmd  `cmd:"" help:"Print the status payload of a license; exits 0 only when it is valid or in grace, else 1."`
}

type licenseInspectCmd struct{ licenseCheckCmd }
type licenseVerifyCmd struct{ licenseCheckCmd }

func (c *licenseInspectCmd) Run(env *cli.Env) error { return c.check(env, false) }
func (c *licenseVerifyCmd) Run(env *cli.Env) error  { return c.check(env, true) }

// licenseCheckCmd backs both inspect and verify: they compute the same
// status offline (no revocations, no stream) and differ in exit code.
type licenseCheckCmd struct {
	cli.KeyringFlags
	File      string    `arg:"" placeholder:"FILE|-" help:"License file (compact key or license.json), or - for standard input."`
	Org       string    `placeholder:"SLUG" help:"Also check that the license is for this org (_instance for an instance-wide license)."`
	InstallID string    `placeholder:"UUID" help:"Also check a license bound to an install against this install id."`
	GraceDays int       `env:"LICENSE_GRACE_DAYS" default:"7" help:"Grace applied when the license sets no grace_days."`
	At        time.Time `placeholder:"TIME" help:"Evaluate at this RFC 3339 time instead of now."`
	Output    string    `short:"o" enum:"json,table" default:"json" placeholder:"json|table" help:"json: the status payload (default); table: key/value lines for people."`
}

func (c *licenseCheckCmd) check(env *cli.Env, strict bool) error {
	if c.Org != "" && c.Org != license.InstanceOrg && !license.ValidSlug(c.Org) {
		return cli.Usage("--org %q is neither an org slug nor %s", c.Org, license.InstanceOrg)
	}
	if c.GraceDays < 0 || c.GraceDays > license.MaxGraceDays {
		return cli.Usage("LICENSE_GRACE_DAYS must be 0..%d", license.MaxGraceDays)
	}
	keys, err := c.Load()
	if err != nil {
		return cli.Usage("key ring: %v", err)
	}
	input, err := cli.ReadInput(env, c.File, license.MaxInputSize)
	if errors.Is(err, fs.ErrNotExist) {
		return cli.Usage("%v", err)
	}
	if err != nil {
		return err
	}
	at := env.Now()
	if !c.At.IsZero() {
		at = c.At
	}
	l, verr := keys.Ring().Verify(input, license.Expect{Org: c.Org, InstallID: c.InstallID})
	held := &license.Held{License: l, Err: verr}
	if l == nil {
		held.License = &license.License{}
	} else {
		held.GraceDays = license.EffectiveGrace(l.Payload, c.GraceDays)
	}
	report := license.Describe(c.Org, held, false, nil, at)
	if c.Output == outTable {
		b, err := json.Marshal(report)
		if err != nil {
			return err
		}
		if err := printTable(env.Stdout, b, ""); err != nil {
			return err
		}
	} else {
		out, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
	}
	if l != nil {
		fmt.Fprintf(env.Stderr, "kid %s, fingerprint %s, %d trusted key(s)\n", l.Kid, l.Fingerprint, keys.Ring().Len())
	}
	if verr != nil {
		fmt.Fprintf(env.Stderr, "%v\n", verr)
	}
	if strict && report.Status != license.StatusValid && report.Status != license.StatusGrace {
		return cli.Silent(cli.ExitFailed)
	}
	return nil
}
