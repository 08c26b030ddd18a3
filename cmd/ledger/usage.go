package main

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/usage"
	"github.com/licenseledger/ledger/license"
)

// The seat commands: usage set, usage report and seats enforcement set,
// API clients like status and upload (same flags, output and exit codes).

type usageCmd struct {
	Set    usageSetCmd    `cmd:"" help:"Record an org's active users (operators and reporter tokens); prints the org's status payload. A number already recorded appends nothing."`
	Report usageReportCmd `cmd:"" help:"Print the seat true-up: per org and month, the most users reported, the users_limit in force, the days over it (JSON, or CSV with --format csv)."`
}

type usageSetCmd struct {
	clientFlags
	Org   string `required:"" placeholder:"SLUG" help:"The org (a slug; usage is never reported for _instance)."`
	Users int    `required:"" placeholder:"N" help:"The org's active users now (seats in use), 0..2147483647."`
}

// Help says how often a platform may report.
func (c *usageSetCmd) Help() string {
	return "Report as often as you like: a number equal to the one recorded appends nothing. A change is recorded at " +
		"most LEDGER_USAGE_RATE times an hour per org (default 60); past that the ledger answers rate_limited " +
		"(exit 3) with when to report again, and records nothing.\n\n" + clientExitCodes
}

func (c *usageSetCmd) Run(env *cli.Env) error {
	if !license.ValidSlug(c.Org) {
		return cli.Usage("--org %q is not an org slug (^[a-z0-9][a-z0-9-]{0,62}$): usage is reported per org", c.Org)
	}
	if c.Users < 0 || c.Users > 1<<31-1 {
		return cli.Usage("--users %d: want 0..2147483647", c.Users)
	}
	body, err := json.Marshal(map[string]int{"users": c.Users})
	if err != nil {
		return err
	}
	return c.send(env, apiRequest{method: http.MethodPut, path: "api/usage", query: url.Values{"org": {c.Org}},
		body: body, contentType: "application/json"})
}

type usageReportCmd struct {
	clientConn
	Output string `short:"o" enum:"json,table,csv" default:"json" placeholder:"json|table|csv" help:"json: the API's answer pretty-printed; table: a line per org and month for people; csv: header month,org,max_users,users_limit,license_id,days_over,max_overage,reports."`
	From   string `placeholder:"WHEN" help:"Start of the period, inclusive: YYYY-MM, YYYY-MM-DD or RFC 3339 (UTC). Default: the start of the current month."`
	To     string `placeholder:"WHEN" help:"End of the period, exclusive, in the same forms. Default: now."`
	Org    string `placeholder:"SLUG" help:"Only this org (default: every org with a usage report that the token covers)."`
	Format string `enum:"json,csv," default:"" hidden:"" help:"Deprecated: -o json|csv says the same."`
}

// Help explains the columns.
func (c *usageReportCmd) Help() string {
	return "Computed from the events on every call, so any ledger, and a replay, give the same report. max_users is " +
		"the most users in force at any moment of the month; users_limit and license_id are those of the license " +
		"in force (valid or in grace) at the end of the month's part of the period, 0 meaning unlimited; days_over " +
		"counts the UTC days on which the users exceeded the limit in force at that moment; max_overage is the " +
		"largest such excess.\n\n" + clientExitCodes
}

func (c *usageReportCmd) Run(env *cli.Env) error {
	q := url.Values{}
	for name, v := range map[string]string{"from": c.From, "to": c.To} {
		if v == "" {
			continue
		}
		if _, err := usage.ParseTime(v); err != nil {
			return cli.Usage("--%s: %v", name, err)
		}
		q.Set(name, v)
	}
	if c.Org != "" {
		if !license.ValidSlug(c.Org) {
			return cli.Usage("--org %q is not an org slug (^[a-z0-9][a-z0-9-]{0,62}$)", c.Org)
		}
		q.Set("org", c.Org)
	}
	r := apiRequest{method: http.MethodGet, path: "api/usage/report", query: q}
	format := c.Output
	if c.Format != "" { // the deprecated --format, kept for scripts
		format = c.Format
	}
	switch format {
	case outCSV:
		q.Set("format", "csv")
		r.raw = true
	case outTable:
		q.Set("format", "csv")
		r.csvTable = true
	}
	f := &clientFlags{clientConn: c.clientConn, Output: outJSON}
	return f.send(env, r)
}

type seatsCmd struct {
	Enforcement seatsEnforcementCmd `cmd:"" help:"The install-wide seat enforcement mode."`
}

type seatsEnforcementCmd struct {
	Set seatsEnforcementSetCmd `cmd:"" help:"Set the seat enforcement mode (operators); prints {\"mode\": …}."`
}

type seatsEnforcementSetCmd struct {
	clientFlags
	Mode string `arg:"" enum:"off,soft,hard" placeholder:"off|soft|hard" help:"off: users_limit is shown only; soft: seat-consuming routes (gatekeeper --seat-routes) of an org at or over its limit pass with X-License-Warning; hard: they are refused (403 users_limit_reached) while other routes keep working."`
}

func (c *seatsEnforcementSetCmd) Run(env *cli.Env) error {
	return c.putMode(env, "api/seat-enforcement", c.Mode)
}
