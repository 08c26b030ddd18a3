package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/cli"
)

// The token commands edit the tokens file that running ledgers re-read
// (within a second): create appends a new random token and prints it, list
// shows what the file holds (never a token: the file keeps only hashes),
// revoke removes one. Exit codes: 0 ok, 1 for a refused edit (duplicate or
// unknown name, unreadable or malformed file), 2 for usage errors.

type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Add a new random token to the tokens file and print it (only the token, on standard output)."`
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
	Role string   `required:"" enum:"operator,org_admin,auditor" placeholder:"ROLE" help:"operator (every org and _instance), org_admin (its orgs' licenses) or auditor (audit of its orgs, or of every org)."`
	Org  []string `placeholder:"ORG" help:"An org the token covers; repeat or separate with commas. org_admin needs at least one and never _instance; auditor defaults to * (every org); operator takes none."`
	Name string   `required:"" placeholder:"NAME" help:"Unique name, 1..64 of A-Z a-z 0-9 _ . @ -; events record it as the actor id."`
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
	case role == auth.RoleOperator, role == auth.RoleAuditor && len(orgs) == 0:
		orgs = []string{"*"}
	case role == auth.RoleOrgAdmin && len(orgs) == 0:
		return cli.Usage("an org_admin token needs --org")
	}
	token := auth.Generate()
	e, err := auth.NewEntry(token, role, orgs, c.Name)
	if err != nil {
		return cli.Usage("%v", err)
	}
	path := c.path()
	if err := auth.AddToken(path, e); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, token)
	fmt.Fprintf(env.Stderr, "added %s (%s, %s) to %s\n", e.Name, e.Role, strings.Join(e.Orgs, ","), path)
	return nil
}

type tokenListCmd struct {
	tokensFileFlags
	Output string `short:"o" enum:"table,json" default:"table" help:"table for people, or json: an array of {name, role, orgs, hash_prefix}."`
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
	entries, err := auth.ReadTokensFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.Stderr, "no tokens file at %s\n", path)
		entries, err = nil, nil
	}
	if err != nil {
		return err
	}
	rows := make([]tokenListing, 0, len(entries))
	for _, e := range entries {
		rows = append(rows, tokenListing{Name: e.Name, Role: string(e.Role), Orgs: e.Orgs, HashPrefix: e.HashPrefix()})
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
