package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/cli"
)

// The token commands edit the tokens file that running ledgers re-read
// (within a second): create appends a new random token, prints it and
// waits until the ledger accepts it, list shows what the file holds (never
// a token: the file keeps only hashes), revoke removes one. Exit codes: 0
// ok, 1 for a refused edit (duplicate or unknown name, unsafe or malformed
// file), a list with broken lines, or a new token the ledger still refuses
// when the wait ends; 2 for usage errors.

type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Add a new random token to the tokens file and print it (only the token, on standard output); return once the ledger accepts it."`
	List   tokenListCmd   `cmd:"" help:"List the tokens file: name, role, orgs and hash prefix (the file holds no token)."`
	Revoke tokenRevokeCmd `cmd:"" help:"Remove a token from the tokens file by name; running ledgers refuse it within a second."`
}

// tokensFileFlags locate the tokens file.
type tokensFileFlags struct {
	DataDir    string `name:"data-dir" env:"DATA_DIR" default:"./data" help:"Ledger data directory, which holds the tokens file unless --tokens-file says otherwise."`
	TokensFile string `name:"tokens-file" env:"LEDGER_TOKENS_FILE" placeholder:"FILE" help:"The tokens file (default: $DATA_DIR/tokens)."`
}

func (f *tokensFileFlags) path() string {
	if f.TokensFile != "" {
		return f.TokensFile
	}
	return filepath.Join(f.DataDir, "tokens")
}

type tokenCreateCmd struct {
	tokensFileFlags
	Role   string        `required:"" enum:"operator,org_admin,auditor,reporter" placeholder:"ROLE" help:"operator (every org and _instance), org_admin (its orgs' licenses), auditor (audit of its orgs, or of every org) or reporter (only reports the usage of its orgs, or of every org)."`
	Org    []string      `placeholder:"ORG" help:"An org the token covers; repeat or separate with commas. org_admin needs at least one and never _instance; auditor and reporter default to * (every org, never _instance for reporter); operator takes none."`
	Name   string        `required:"" placeholder:"NAME" help:"Unique name, 1..64 of A-Z a-z 0-9 _ . @ -; events record it as the actor id."`
	Server string        `env:"LEDGER_SERVER" default:"http://127.0.0.1:8080" placeholder:"URL" help:"The ledger that reads this tokens file: create returns once it accepts the new token (GET /api/whoami). When nothing answers there, create says so and returns."`
	CAFile string        `name:"ca-file" env:"LEDGER_CA_FILE" placeholder:"FILE" help:"PEM CA bundle that verifies an https:// server."`
	Wait   time.Duration `default:"5s" help:"How long the ledger may take to accept the new token; still refused then: exit 1 (the token stays in the file)."`
	NoWait bool          `name:"no-wait" help:"Do not ask a ledger: for a tokens file made here and distributed elsewhere."`
}

// Help details how create waits.
func (c *tokenCreateCmd) Help() string {
	return "The token is printed once the file holds it. Unless --no-wait, create then asks the ledger at --server " +
		"(GET /api/whoami with the new token) until it accepts the token, so the token works as soon as create returns. " +
		"When nothing answers at --server, a note on stderr says so and create exits 0. When the ledger still refuses " +
		"the token after --wait (it reads another tokens file, or refuses this one: see its log and /readyz), create " +
		"exits 1; the token stays in the file."
}

func (c *tokenCreateCmd) Run(env *cli.Env) error {
	role := auth.Role(c.Role)
	var orgs []string
	for _, o := range c.Org {
		if o = strings.TrimSpace(o); o != "" && !slices.Contains(orgs, o) {
			orgs = append(orgs, o)
		}
	}
	switch {
	case role == auth.RoleOperator && len(orgs) > 0:
		return cli.Usage("an operator token covers every org: drop --org")
	case role == auth.RoleOperator, (role == auth.RoleAuditor || role == auth.RoleReporter) && len(orgs) == 0:
		orgs = []string{"*"}
	case role == auth.RoleOrgAdmin && len(orgs) == 0:
		return cli.Usage("an org_admin token needs --org")
	}
	token := auth.Generate()
	e, err := auth.NewEntry(token, role, orgs, c.Name)
	if err != nil {
		return cli.Usage("%v", err)
	}
	var client *acceptanceCheck
	if !c.NoWait {
		if client, err = c.acceptanceCheck(); err != nil {
			return err
		}
	}
	path := c.path()
	if err := auth.AddToken(path, e); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, token)
	fmt.Fprintf(env.Stderr, "added %s (%s, %s) to %s\n", e.Name, e.Role, strings.Join(e.Orgs, ","), path)
	if client == nil {
		return nil
	}
	return client.wait(env, token, path, c.Wait)
}

// acceptanceCheck asks a ledger whether it accepts a token.
type acceptanceCheck struct {
	flags  *clientFlags
	url    string
	client *http.Client
	plain  bool // plain HTTP to another host
}

// acceptanceCheck checks the flags of the wait before anything is written.
func (c *tokenCreateCmd) acceptanceCheck() (*acceptanceCheck, error) {
	if c.Wait <= 0 {
		return nil, cli.Usage("--wait must be positive (or pass --no-wait)")
	}
	f := &clientFlags{clientConn: clientConn{Server: c.Server, CAFile: c.CAFile, Timeout: 2 * time.Second}}
	base, err := f.serverURL()
	if err != nil {
		return nil, err
	}
	client, err := f.httpClient()
	if err != nil {
		return nil, err
	}
	return &acceptanceCheck{flags: f, url: base.JoinPath("api/whoami").String(), client: client,
		plain: base.Scheme == "http" && !isLoopback(base.Hostname())}, nil
}

// wait asks GET /api/whoami with token until the ledger accepts it (nil),
// nothing answers (a note, nil), or limit passes with the ledger still
// refusing it (exit 1).
func (a *acceptanceCheck) wait(env *cli.Env, token, path string, limit time.Duration) error {
	defer a.client.CloseIdleConnections()
	if a.plain {
		fmt.Fprintf(env.Stderr, "ledger: warning: the new token goes to %s over plain HTTP\n", a.flags.Server)
	}
	deadline := time.Now().Add(limit)
	for {
		code, err := a.ask(token)
		switch {
		case err != nil:
			fmt.Fprintf(env.Stderr, "ledger: note: no ledger answers at %s (%v); the token works once a ledger reads %s\n", a.flags.Server, err, path)
			return nil
		case code == http.StatusOK:
			fmt.Fprintf(env.Stderr, "the ledger at %s accepts it\n", a.flags.Server)
			return nil
		case code != http.StatusUnauthorized && code != http.StatusTooManyRequests:
			fmt.Fprintf(env.Stderr, "ledger: note: %s answered %d, not as a ledger; the token works once a ledger reads %s\n", a.flags.Server, code, path)
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the ledger at %s still refuses the new token after %s: it reads another tokens file than %s, or refuses that file (see its log, and tokens_file on its /readyz); the token stays in the file", a.flags.Server, limit, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ask sends one GET /api/whoami with token and returns the status.
func (a *acceptanceCheck) ask(token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, a.url, http.NoBody)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ledger-Client", "cli")
	req.Header.Set("User-Agent", "ledger-cli/"+version)
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

type tokenListCmd struct {
	tokensFileFlags
	Output string `short:"o" enum:"table,json,csv" default:"table" placeholder:"table|json|csv" help:"table for people (default), json: an array of {name, role, orgs, hash_prefix}, or csv: name,role,orgs,hash_prefix with a header line."`
}

// tokenListing is one row of token list.
type tokenListing struct {
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Orgs       []string `json:"orgs"`
	HashPrefix string   `json:"hash_prefix"`
}

func (c *tokenListCmd) Run(env *cli.Env) error {
	path := c.path()
	parsed, err := auth.ReadLines(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.Stderr, "no tokens file at %s\n", path)
		err = nil
	}
	if err != nil {
		return err
	}
	if err := c.print(env, parsed.Entries); err != nil {
		return err
	}
	// The tokens a ledger trusts are listed; the lines it ignores are
	// reported, and make the exit status 1.
	for _, le := range parsed.Broken {
		fmt.Fprintf(env.Stderr, "%v (ignored: this line grants nothing)\n", le)
	}
	if len(parsed.Broken) > 0 {
		return cli.Silent(cli.ExitFailed)
	}
	return nil
}

// print writes the listing of entries.
func (c *tokenListCmd) print(env *cli.Env, entries []auth.Entry) error {
	rows := make([]tokenListing, 0, len(entries))
	for _, e := range entries {
		rows = append(rows, tokenListing{Name: e.Name, Role: string(e.Role), Orgs: e.Orgs, HashPrefix: e.HashPrefix()})
	}
	if c.Output == outCSV {
		return writeRows(env.Stdout, outCSV, []string{"name", "role", "orgs", "hash_prefix"}, rows)
	}
	if c.Output == "json" {
		out, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tORGS\tHASH")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Role, strings.Join(r.Orgs, ","), r.HashPrefix)
	}
	return tw.Flush()
}

type tokenRevokeCmd struct {
	tokensFileFlags
	Name string `arg:"" placeholder:"NAME" help:"The token's name (see token list)."`
}

func (c *tokenRevokeCmd) Run(env *cli.Env) error {
	path := c.path()
	e, err := auth.RemoveToken(path, c.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "revoked %s (%s, hash %s) in %s\n", e.Name, e.Role, e.HashPrefix(), path)
	return nil
}
