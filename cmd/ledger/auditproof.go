package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/cli"
)

// The verifiable audit from the command line: the install's signed
// checkpoints, a record's proof bundle, and the offline check of one.

type auditCheckpointCmd struct {
	auditSource
	Size uint64 `placeholder:"N" help:"The checkpoint of this tree size (default: the latest)."`
}

func (c *auditCheckpointCmd) Run(env *cli.Env) error {
	if c.DatabaseURL == "" {
		q := url.Values{}
		if c.Size > 0 {
			q.Set("size", strconv.FormatUint(c.Size, 10))
		}
		resp, err := c.apiGet(env, "api/audit/checkpoint", q)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(env.Stdout, io.LimitReader(resp.Body, 1<<20))
		return err
	}
	ctx := context.Background()
	reader, closeDB, err := c.openDB(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	var cp audit.Checkpoint
	if c.Size > 0 {
		cp, err = reader.Checkpoints().BySize(ctx, c.Size)
	} else {
		cp, err = reader.Checkpoints().Latest(ctx)
	}
	if errors.Is(err, audit.ErrNoCheckpoint) {
		fmt.Fprintln(env.Stderr, "not_found: no such checkpoint was signed")
		return cli.Silent(cli.ExitRejected)
	}
	if err != nil {
		return unavailable("%v", err)
	}
	_, err = env.Stdout.Write(cp.Note)
	return err
}

type auditCheckpointKeyCmd struct {
	auditSource
	CheckpointKey string `name:"checkpoint-key" env:"LEDGER_CHECKPOINT_KEY_FILE" placeholder:"FILE" help:"The install's checkpoint key file: print its verifier key without asking the ledger. Default: $DATA_DIR/checkpoint.key when readable, else the ledger API."`
}

// Help says where the key comes from.
func (c *auditCheckpointKeyCmd) Help() string {
	return "Prints the verifier key (name+keyhash+base64, the note format) that checks the install's checkpoints: " +
		"give it to auditors and witnesses. It is read from the checkpoint key file when one is given or found in " +
		"$DATA_DIR, else asked of the ledger (GET /api/audit/checkpoint/key).\n\n" + auditExitCodes
}

func (c *auditCheckpointKeyCmd) Run(env *cli.Env) error {
	path := c.CheckpointKey
	if path == "" {
		if _, err := os.Stat(filepath.Join(c.DataDir, "checkpoint.key")); err == nil {
			path = filepath.Join(c.DataDir, "checkpoint.key")
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cli.Usage("--checkpoint-key: %v", err)
		}
		k, err := audit.ParseCheckpointKey(strings.TrimSpace(string(b)))
		if err != nil {
			return cli.Usage("--checkpoint-key %s: %v", path, err)
		}
		fmt.Fprintln(env.Stdout, k.VerifierKey())
		return nil
	}
	resp, err := c.apiGet(env, "api/audit/checkpoint/key", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(env.Stdout, io.LimitReader(resp.Body, 4<<10))
	return err
}

type auditProveCmd struct {
	auditSource
	Seq  uint64 `required:"" placeholder:"N" help:"The record's sequence number."`
	Size uint64 `placeholder:"S" help:"Prove it in the checkpoint of this tree size (default: the latest)."`
}

// Help describes the bundle.
func (c *auditProveCmd) Help() string {
	return "Prints the record's proof bundle, one JSON document: the record as the audit export writes it, its " +
		"inclusion proof, and the signed checkpoint the proof is against. Anyone with the install's verifier key " +
		"checks it offline with `ledger audit verify-proof`; it reveals nothing of any other record. A token " +
		"scoped to some orgs is given bundles of their records only.\n\n" + auditExitCodes
}

func (c *auditProveCmd) Run(env *cli.Env) error {
	if c.Seq == 0 {
		return cli.Usage("--seq must be a record's sequence number (from 1)")
	}
	var b audit.Bundle
	if c.DatabaseURL == "" {
		q := url.Values{"seq": {strconv.FormatUint(c.Seq, 10)}}
		if c.Size > 0 {
			q.Set("size", strconv.FormatUint(c.Size, 10))
		}
		resp, err := c.apiGet(env, "api/audit/proof/record", q)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&b); err != nil {
			return unavailable("the ledger answered with something else than a proof bundle: %v", err)
		}
	} else {
		ctx := context.Background()
		reader, closeDB, err := c.openDB(ctx)
		if err != nil {
			return err
		}
		defer closeDB()
		b, err = audit.BuildBundle(ctx, reader, reader, reader.Checkpoints(), c.Seq, c.Size)
		switch {
		case errors.Is(err, audit.ErrNoCheckpoint):
			fmt.Fprintln(env.Stderr, "not_found: no such checkpoint was signed")
			return cli.Silent(cli.ExitRejected)
		case errors.Is(err, audit.ErrTreeSize):
			fmt.Fprintf(env.Stderr, "bad_request: %v\n", err)
			return cli.Silent(cli.ExitRejected)
		case err != nil:
			return unavailable("%v", err)
		}
	}
	out, _ := json.MarshalIndent(b, "", "  ")
	_, err := fmt.Fprintf(env.Stdout, "%s\n", out)
	return err
}

type auditVerifyProofCmd struct {
	Bundle     string `arg:"" optional:"" placeholder:"BUNDLE" help:"A proof bundle (ledger audit prove, or the web UI's download); - for standard input."`
	Key        string `env:"LEDGER_CHECKPOINT_VERIFIER_KEY" placeholder:"VKEY" help:"The install's verifier key (name+keyhash+base64: ledger audit checkpoint-key)."`
	KeyFile    string `name:"key-file" placeholder:"FILE" help:"A file holding the verifier key."`
	Record     string `placeholder:"FILE" help:"Instead of a bundle: the record, one JSON object as the audit export writes it."`
	Proof      string `placeholder:"FILE" help:"Instead of a bundle: the inclusion proof (GET /api/audit/proof/inclusion)."`
	Checkpoint string `placeholder:"FILE" help:"Instead of a bundle: the signed checkpoint (ledger audit checkpoint)."`
	textOutput
}

// Help says what is checked, and that nothing is asked of the ledger.
func (c *auditVerifyProofCmd) Help() string {
	return "Checks, offline, that a record is in the install's audit trail: the checkpoint is signed by the " +
		"verifier key, the record's hash is its envelope chained after its prev_hash, and the proof puts exactly " +
		"that envelope in the checkpoint's tree. Prints 'ok seq=N tree_size=S root=HEX origin=ORIGIN', or " +
		"'not proven: <why>' (exit 1). Exit 2 on usage errors."
}

func (c *auditVerifyProofCmd) Run(env *cli.Env) error {
	vkey := strings.TrimSpace(c.Key)
	if c.KeyFile != "" {
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return cli.Usage("--key-file: %v", err)
		}
		vkey = strings.TrimSpace(string(b))
	}
	if vkey == "" {
		return cli.Usage("the install's verifier key is needed: --key or --key-file (ledger audit checkpoint-key prints it)")
	}
	var b audit.Bundle
	parts := c.Record != "" || c.Proof != "" || c.Checkpoint != ""
	switch {
	case parts && c.Bundle != "":
		return cli.Usage("give a bundle, or --record, --proof and --checkpoint, not both")
	case parts:
		if c.Record == "" || c.Proof == "" || c.Checkpoint == "" {
			return cli.Usage("--record, --proof and --checkpoint go together")
		}
		for _, f := range []struct {
			path string
			into any
		}{{c.Record, &b.Record}, {c.Proof, &b.Proof}} {
			raw, err := readInput(env, f.path)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, f.into); err != nil {
				return cli.Usage("%s: not JSON of the expected form: %v", f.path, err)
			}
		}
		note, err := readInput(env, c.Checkpoint)
		if err != nil {
			return err
		}
		b.Checkpoint = string(note)
	case c.Bundle != "":
		raw, err := readInput(env, c.Bundle)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &b); err != nil || b.Checkpoint == "" {
			return cli.Usage("%s: not a proof bundle (ledger audit prove writes one)", c.Bundle)
		}
	default:
		return cli.Usage("give a proof bundle, or --record, --proof and --checkpoint")
	}
	v, err := audit.VerifyBundle(b, vkey)
	switch {
	case c.Output != outText && err != nil:
		if werr := writeObject(env.Stdout, c.Output, map[string]any{"ok": false, "error": err.Error()}); werr != nil {
			return werr
		}
	case c.Output != outText:
		return writeObject(env.Stdout, c.Output, map[string]any{"ok": true, "seq": v.Seq, "tree_size": v.TreeSize,
			"root": fmt.Sprintf("%x", v.Root), "origin": v.Origin})
	case err != nil:
		fmt.Fprintf(env.Stdout, "not proven: %v\n", err)
	default:
		fmt.Fprintf(env.Stdout, "ok seq=%d tree_size=%d root=%x origin=%s\n", v.Seq, v.TreeSize, v.Root, v.Origin)
		return nil
	}
	return cli.Silent(cli.ExitFailed)
}

// readInput reads a file, or standard input for "-".
func readInput(env *cli.Env, path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = env.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, cli.Usage("%v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, cli.Usage("%s: %v", path, err)
	}
	return b, nil
}
