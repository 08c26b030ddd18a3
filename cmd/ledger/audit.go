package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/license"
)

// The audit commands read the hash-chained audit trail: verify walks and
// checks all of it, digest prints its head, export writes records out.
// With DATABASE_URL they read license_audit in PostgreSQL directly (verify
// also compares it with the stream, when the stream answers); without,
// they go through the ledger API (GET /api/audit, /api/audit/verify).
// Either way they hold a bounded amount in memory, whatever the trail's
// size.

type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check the whole chain: gapless sequences, prev_hash links, hashes, every column derived from the raw envelope, and the stream's copy when reachable. Prints 'ok <rows> <digest>' or 'mismatch at seq N (<column>)' (exit 1). Through the API, a token scoped to some orgs checks their records only: 'ok <rows> scope=<org,…>'."`
	Digest auditDigestCmd `cmd:"" help:"Print the trail's digest, seq:hex: keep it elsewhere to prove later (audit verify --digest) that nothing up to seq changed."`
	Export auditExportCmd `cmd:"" help:"Write audit records to standard output as JSON Lines (default), a JSON array or CSV, streaming any number of them."`

	Checkpoint    auditCheckpointCmd    `cmd:"" help:"Print the latest signed checkpoint of the trail's Merkle tree (C2SP tlog-checkpoint in a signed note), or the one of --size."`
	CheckpointKey auditCheckpointKeyCmd `cmd:"" name:"checkpoint-key" help:"Print the verifier key of the install's checkpoints (name+keyhash+base64)."`
	Prove         auditProveCmd         `cmd:"" help:"Print a record's proof bundle: the record, its inclusion proof and the signed checkpoint, for an offline check."`
	VerifyProof   auditVerifyProofCmd   `cmd:"" name:"verify-proof" help:"Check a proof bundle offline against the install's verifier key: no ledger, no database."`
}

const auditExitCodes = `Exit codes: 0 ok; 1 the trail does not verify; 2 usage; 3 the API answered 4xx ("<code>: <message>" on stderr); 4 PostgreSQL or the ledger could not be reached (an export may then be incomplete).`

// auditSource says where the trail is read: PostgreSQL, else the API.
type auditSource struct {
	DatabaseURL string        `name:"database-url" env:"DATABASE_URL" placeholder:"URL" help:"Read license_audit in PostgreSQL directly (a login user granted ledger_auditor suffices). Unset: through the ledger API."`
	Server      string        `env:"LEDGER_SERVER" default:"http://127.0.0.1:8080" placeholder:"URL" help:"Ledger API base URL, without DATABASE_URL."`
	Token       string        `env:"LEDGER_TOKEN" placeholder:"TOKEN" help:"Bearer token of an auditor, an operator, or (export, verify) an org admin (prefer the variable). Default: the contents of $DATA_DIR/admin.token."`
	DataDir     string        `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Ledger data directory: admin.token, and nats/reader.nk for the stream comparison."`
	CAFile      string        `name:"ca-file" env:"LEDGER_CA_FILE" placeholder:"FILE" help:"PEM CA bundle that verifies an https:// server."`
	Timeout     time.Duration `env:"LEDGER_TIMEOUT" default:"30s" help:"Give up when the ledger has not begun to answer within this long (exit 4); for verify and digest, the answer comes after the server's whole walk. An export that has begun runs to its end."`
}

// Help is the detail of every audit command's --help.
func (f *auditSource) Help() string { return auditExitCodes }

func (f *auditSource) client() *clientFlags {
	return &clientFlags{clientConn: clientConn{Server: f.Server, Token: f.Token, DataDir: f.DataDir, CAFile: f.CAFile, Timeout: f.Timeout}}
}

// openDB connects to DATABASE_URL.
func (f *auditSource) openDB(ctx context.Context) (*postgres.AuditReader, func(), error) {
	db, err := postgres.OpenDB(ctx, f.DatabaseURL)
	if errors.Is(err, postgres.ErrInvalidDSN) {
		return nil, nil, cli.Usage("DATABASE_URL: %v", err)
	}
	if err != nil {
		return nil, nil, unavailable("DATABASE_URL: %v", err)
	}
	return db.AuditReader(), db.Close, nil
}

// apiGet sends GET path?query to the ledger and returns a 2xx response for
// the caller to read and close. A 4xx prints "<code>: <message>" on stderr
// (exit 3); anything else is unavailable (exit 4). Timeout bounds the wait
// for the response's headers, not the reading of its body.
func (f *auditSource) apiGet(env *cli.Env, path string, query url.Values) (*http.Response, error) {
	c := f.client()
	base, err := c.serverURL()
	if err != nil {
		return nil, err
	}
	token, err := c.bearer()
	if err != nil {
		return nil, err
	}
	client, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	client.Timeout = 0 // a streamed export takes as long as it takes
	tr := client.Transport.(*http.Transport)
	tr.ResponseHeaderTimeout, tr.DisableKeepAlives = f.Timeout, true // one request per command
	if base.Scheme == "http" && !isLoopback(base.Hostname()) {
		fmt.Fprintf(env.Stderr, "ledger: warning: the token goes to %s over plain HTTP\n", base.Host)
	}
	u := base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return nil, cli.Usage("--server %q: %v", f.Server, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ledger-Client", "cli")
	req.Header.Set("User-Agent", "ledger-cli/"+version)
	resp, err := client.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		fmt.Fprintln(env.Stderr, describeError(resp, answer))
		return nil, cli.Silent(cli.ExitRejected)
	}
	return nil, unavailable("%s", describeError(resp, answer))
}

// apiVerify asks GET /api/audit/verify.
func (f *auditSource) apiVerify(env *cli.Env, digest string) (audit.Result, error) {
	q := url.Values{}
	if digest != "" {
		q.Set("digest", digest)
	}
	resp, err := f.apiGet(env, "api/audit/verify", q)
	if err != nil {
		return audit.Result{}, err
	}
	defer resp.Body.Close()
	var res audit.Result
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return res, f.client().transportError(err)
	}
	if err := res.UnmarshalJSON(body); err != nil || (res.Digest == "" && res.Scope == nil) {
		return res, unavailable("the ledger answered the verification with something else than a result: %.200q", body)
	}
	return res, nil
}

type auditVerifyCmd struct {
	auditSource
	cli.NATSConn
	textOutput
	Digest string `placeholder:"SEQ:HEX" help:"A digest taken earlier (audit digest, or the ledger's 'audit digest' log line) that must still be on the chain."`
}

// Help says how verify reaches the stream.
func (c *auditVerifyCmd) Help() string {
	return "With DATABASE_URL, every row is also compared with the stream's message when the stream answers: " +
		"NATS_URL, else the embedded server of ledger serve at --nats-listen (default 127.0.0.1:4223), with reader credentials (NATS_NKEY, " +
		"NATS_CREDS or NATS_USER, else $DATA_DIR/nats/reader.nk). When it does not answer, a note goes to " +
		"stderr and PostgreSQL is verified alone. Without DATABASE_URL the ledger verifies its own trail " +
		"(GET /api/audit/verify); a token scoped to some orgs has their records verified only, without a digest.\n\n" + auditExitCodes
}

func (c *auditVerifyCmd) Run(env *cli.Env) error {
	if c.Digest != "" {
		if _, _, err := audit.ParseDigest(c.Digest); err != nil {
			return cli.Usage("--digest: %v", err)
		}
	}
	var res audit.Result
	if c.DatabaseURL == "" {
		var err error
		if res, err = c.apiVerify(env, c.Digest); err != nil {
			return err
		}
	} else {
		ctx := context.Background()
		reader, closeDB, err := c.openDB(ctx)
		if err != nil {
			return err
		}
		defer closeDB()
		stream, closeStream := c.openStream(ctx, env)
		defer closeStream()
		if res, err = audit.Verify(ctx, reader, audit.VerifyOptions{Digest: c.Digest, Stream: stream}); err != nil {
			return unavailable("%v", err)
		}
	}
	if c.Output == outText {
		fmt.Fprintln(env.Stdout, res.String())
	} else if err := writeObject(env.Stdout, c.Output, res); err != nil {
		return err
	}
	if !res.OK {
		return cli.Silent(cli.ExitFailed)
	}
	return nil
}

// openStream reaches the stream with reader credentials, best effort:
// NATS_URL, else the embedded server at --nats-listen, with the
// credentials given, else $DATA_DIR/nats/reader.nk. When it does not
// answer, verification goes on without it, and says so on stderr.
func (c *auditVerifyCmd) openStream(ctx context.Context, env *cli.Env) (audit.StreamLookup, func()) {
	cfg := c.Resolve(c.DataDir, "ledger-audit-verify", natsauth.RoleReader, nil)
	skip := func(err error) (audit.StreamLookup, func()) {
		fmt.Fprintf(env.Stderr, "ledger: note: not comparing with the stream, which is not reachable (%v)\n", err)
		return nil, func() {}
	}
	conn, err := natsbus.Dial(cfg)
	if err != nil {
		return skip(err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	bus, _, err := conn.Open(octx, c.Stream, 1, false)
	cancel()
	if err != nil {
		conn.Close()
		return skip(err)
	}
	lookup, done := streamLookups(bus)()
	return lookup, func() { done(); conn.Close() }
}

// streamSource is the part of the stream a verification reads
// (natsbus.Bus): every message from a sequence on, in order, and one
// message by its sequence.
type streamSource interface {
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
	Get(ctx context.Context, seq uint64) (*events.Message, error)
}

// streamLookups opens, for each verification, a lookup of the messages of
// src (the API's httpapi.Config.StreamMsg, and audit verify's).
func streamLookups(src streamSource) func() (audit.StreamLookup, func()) {
	return func() (audit.StreamLookup, func()) {
		s := &streamCursor{src: src}
		return s.lookup, s.close
	}
}

// streamCursor serves a verification, which asks for every seq in order,
// from one ordered consumer instead of a request per message. A seq the
// consumer does not bring (absent from the stream, or asked out of order)
// is fetched directly.
type streamCursor struct {
	src    streamSource
	cancel context.CancelFunc
	msgs   chan *events.Message
	idle   chan struct{}
	done   chan struct{}
	next   *events.Message
}

func (s *streamCursor) start(seq uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.msgs, s.idle, s.done = cancel, make(chan *events.Message, 256), make(chan struct{}, 1), make(chan struct{})
	go func() {
		defer close(s.done)
		s.src.Consume(ctx, seq, time.Second, func(m *events.Message) error {
			select {
			case s.msgs <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, func() {
			select {
			case s.idle <- struct{}{}:
			default:
			}
		})
	}()
}

func (s *streamCursor) lookup(ctx context.Context, seq uint64) (string, []byte, error) {
	if s.msgs == nil {
		s.start(seq)
	}
	for {
		if s.next == nil {
			select {
			case s.next = <-s.msgs:
			case <-s.idle: // the consumer is at the stream's head
				return s.get(ctx, seq)
			case <-s.done: // the consumer failed: one message at a time
				return s.get(ctx, seq)
			case <-ctx.Done():
				return "", nil, ctx.Err()
			}
		}
		switch m := s.next; {
		case m.Seq < seq:
			s.next = nil
		case m.Seq == seq:
			s.next = nil
			return m.Subject, m.Raw, nil
		default:
			return s.get(ctx, seq)
		}
	}
}

func (s *streamCursor) get(ctx context.Context, seq uint64) (string, []byte, error) {
	m, err := s.src.Get(ctx, seq)
	if err != nil || m == nil {
		return "", nil, err
	}
	return m.Subject, m.Raw, nil
}

func (s *streamCursor) close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

type auditDigestCmd struct {
	auditSource
	textOutput
}

func (c *auditDigestCmd) Run(env *cli.Env) error {
	if c.DatabaseURL == "" {
		res, err := c.apiVerify(env, "")
		if err != nil {
			return err
		}
		if res.Scope != nil {
			fmt.Fprintf(env.Stderr, "forbidden: this token covers %s only, and a digest covers every org's records (use an operator's token, or an auditor's of every org)\n", strings.Join(res.Scope, ","))
			return cli.Silent(cli.ExitRejected)
		}
		if !res.OK {
			fmt.Fprintf(env.Stderr, "ledger: the trail does not verify, no digest to keep: %s\n", res)
			return cli.Silent(cli.ExitFailed)
		}
		return c.print(env, res.Digest)
	}
	ctx := context.Background()
	reader, closeDB, err := c.openDB(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	seq, h, err := reader.Head(ctx)
	if err != nil {
		return unavailable("%v", err)
	}
	return c.print(env, audit.Digest(seq, h))
}

// print writes the digest: the line alone (text), or {"digest": …}.
func (c *auditDigestCmd) print(env *cli.Env, digest string) error {
	if c.Output == outText {
		fmt.Fprintln(env.Stdout, digest)
		return nil
	}
	return writeObject(env.Stdout, c.Output, map[string]string{"digest": digest})
}

type auditExportCmd struct {
	auditSource
	Org    string `placeholder:"SLUG" help:"Only this org's records (a slug, or _instance)."`
	Type   string `placeholder:"TYPE" help:"Only records of this type (license.uploaded, …, or invalid)."`
	Since  string `placeholder:"RFC3339" help:"Only events at or after this time."`
	Until  string `placeholder:"RFC3339" help:"Only events before this time."`
	Output string `short:"o" enum:"jsonl,json,csv,table," default:"" placeholder:"jsonl|json|csv|table" help:"jsonl: one record per line (default); json: an array; csv: RFC 4180 with a header line; table: the CSV's columns aligned for people."`
	Format string `enum:"json,jsonl,csv," default:"" placeholder:"jsonl|json|csv" help:"The same as -o (kept for scripts): jsonl, json or csv."`
}

// format is the chosen output: -o, else --format, else jsonl.
func (c *auditExportCmd) format() string {
	switch {
	case c.Output != "":
		return c.Output
	case c.Format != "":
		return c.Format
	}
	return audit.FormatJSONL
}

// query checks the filters.
func (c *auditExportCmd) query() (audit.Query, error) {
	q := audit.Query{Org: c.Org, Type: c.Type}
	if c.Org != "" && !events.ValidOrg(c.Org) {
		return q, cli.Usage("--org %q is neither an org slug (^[a-z0-9][a-z0-9-]{0,62}$) nor %s", c.Org, license.InstanceOrg)
	}
	for _, f := range []struct {
		name, value string
		to          *time.Time
	}{{"--since", c.Since, &q.Since}, {"--until", c.Until, &q.Until}} {
		if f.value == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.value)
		if err != nil {
			return q, cli.Usage("%s %q: want an RFC 3339 time such as 2026-11-29T13:00:00Z", f.name, f.value)
		}
		*f.to = t
	}
	return q, nil
}

func (c *auditExportCmd) Run(env *cli.Env) error {
	q, err := c.query()
	if err != nil {
		return err
	}
	if c.Output != "" && c.Format != "" && c.Output != c.Format {
		return cli.Usage("-o %s and --format %s: give one", c.Output, c.Format)
	}
	out := bufio.NewWriterSize(env.Stdout, 64<<10)
	format := c.format()
	var w io.Writer = out
	var table chan error
	if format == outTable {
		// The CSV export, its columns aligned as it goes.
		pr, pw := io.Pipe()
		w, format, table = pw, audit.FormatCSV, make(chan error, 1)
		go func() {
			err := csvToTable(pr, out)
			pr.CloseWithError(err)
			table <- err
		}()
	}
	if c.DatabaseURL != "" {
		err = c.exportDB(q, w, format)
	} else {
		err = c.exportAPI(env, w, format)
	}
	if table != nil {
		w.(*io.PipeWriter).CloseWithError(err)
		if terr := <-table; err == nil && terr != nil {
			err = unavailable("the export is incomplete: %v", terr)
		}
	}
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = ferr
	}
	return err
}

func (c *auditExportCmd) exportDB(q audit.Query, out io.Writer, format string) error {
	ctx := context.Background()
	reader, closeDB, err := c.openDB(ctx)
	if err != nil {
		return err
	}
	defer closeDB()
	enc, err := audit.NewEncoder(out, format)
	if err != nil {
		return cli.Usage("%v", err)
	}
	if err := reader.Scan(ctx, q, enc.Encode); err != nil {
		return unavailable("the export is incomplete: %v", err)
	}
	return enc.Close()
}

// exportAPI streams GET /api/audit?format=jsonl|csv to out; a JSON array
// is made of the JSON Lines, as audit.NewEncoder would write it.
func (c *auditExportCmd) exportAPI(env *cli.Env, out io.Writer, format string) error {
	query := url.Values{"format": {format}}
	if format == audit.FormatJSON {
		query.Set("format", audit.FormatJSONL)
	}
	for k, v := range map[string]string{"org": c.Org, "type": c.Type, "since": c.Since, "until": c.Until} {
		if v != "" {
			query.Set(k, v)
		}
	}
	resp, err := c.apiGet(env, "api/audit", query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if format == audit.FormatJSON {
		err = linesToArray(resp.Body, out)
	} else {
		_, err = io.Copy(out, resp.Body)
	}
	if err != nil {
		return unavailable("the export is incomplete: %v", err)
	}
	return nil
}

// linesToArray rewrites JSON Lines as the JSON array audit.NewEncoder
// writes: "[", the records one per line separated by commas, "]".
func linesToArray(r io.Reader, w io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	sep := "[\n"
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				return io.ErrUnexpectedEOF
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			if _, err := w.Write(line); err != nil {
				return err
			}
			sep = ","
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	end := "]\n"
	if sep[0] == '[' {
		end = "[]\n"
	}
	_, err := io.WriteString(w, end)
	return err
}
