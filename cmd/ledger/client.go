package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/secfile"
)

// How the API client commands (client_commands.go) reach a ledger and
// print its answers.

// clientFlags are how a client command reaches the ledger and prints.
type clientFlags struct {
	clientConn
	Output string `short:"o" enum:"json,table" default:"json" placeholder:"json|table" help:"json: the answer pretty-printed; table: key/value lines for people."`
}

// clientConn is how a client command reaches the ledger.
type clientConn struct {
	Server  string        `env:"LEDGER_SERVER" default:"http://127.0.0.1:8080" placeholder:"URL" help:"Ledger API base URL, http:// or https://."`
	Token   string        `env:"LEDGER_TOKEN" placeholder:"TOKEN" help:"Bearer token (prefer the variable: command lines are visible to other users). Default: the contents of $DATA_DIR/admin.token."`
	DataDir string        `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Ledger data directory whose admin.token is used when no token is given."`
	CAFile  string        `name:"ca-file" env:"LEDGER_CA_FILE" placeholder:"FILE" help:"PEM CA bundle that verifies an https:// server, instead of the system roots."`
	Timeout time.Duration `env:"LEDGER_TIMEOUT" default:"30s" help:"Give up on the request after this long (exit 4)."`
}

const clientExitCodes = `Exit codes: 0 the API answered 2xx; 2 usage (nothing was sent); 3 the API answered 4xx ("<code>: <message>" on stderr); 4 the ledger could not be reached, timed out or answered 5xx.`

// Help is the detail of every client command's --help.
func (f *clientFlags) Help() string { return clientExitCodes }

// apiRequest is one call of the API, path relative to --server.
type apiRequest struct {
	method, path string
	query        url.Values
	body         []byte
	contentType  string
	// raw: a 2xx answer is printed exactly as received (CSV).
	raw bool
	// csvTable: a 2xx answer is CSV, printed as aligned columns.
	csvTable bool
}

// maxAnswer bounds the body read from the server.
const maxAnswer = 4 << 20

func unavailable(format string, args ...any) error {
	return &cli.Error{Code: cli.ExitUnavailable, Err: fmt.Errorf(format, args...)}
}

// send makes the request and prints the answer: the body on stdout for a
// 2xx, "<code>: <message>" on stderr for a 4xx (exit 3), an error for
// everything else (exit 4).
func (f *clientFlags) send(env *cli.Env, r apiRequest) error {
	base, err := f.serverURL()
	if err != nil {
		return err
	}
	token, err := f.bearer()
	if err != nil {
		return err
	}
	client, err := f.httpClient()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	if base.Scheme == "http" && !isLoopback(base.Hostname()) {
		fmt.Fprintf(env.Stderr, "ledger: warning: the token goes to %s over plain HTTP\n", base.Host)
	}

	u := base.JoinPath(r.path)
	u.RawQuery = r.query.Encode()
	var body io.Reader = http.NoBody
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, u.String(), body)
	if err != nil {
		return cli.Usage("--server %q: %v", f.Server, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ledger-Client", "cli")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ledger-cli/"+version)
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return f.transportError(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return f.transportError(err)
	}
	if len(answer) > maxAnswer {
		return unavailable("%s answered more than %d bytes", base.Host, maxAnswer)
	}

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300 && r.csvTable:
		return csvAsTable(env.Stdout, answer)
	case resp.StatusCode >= 200 && resp.StatusCode < 300 && r.raw:
		_, err := env.Stdout.Write(answer)
		return err
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return f.print(env, answer, clean(resp.Status))
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		fmt.Fprintln(env.Stderr, describeError(resp, answer))
		return cli.Silent(cli.ExitRejected)
	case resp.StatusCode >= 500:
		return unavailable("%s", describeError(resp, answer))
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "":
		return unavailable("%s redirects to %s: point --server at the ledger itself",
			clean(resp.Status), clean(resp.Header.Get("Location")))
	}
	return unavailable("unexpected answer %s", clean(resp.Status))
}

// describeError renders an error answer as "<code>: <message>", or the
// HTTP status and the start of the body when it is not an API error.
func describeError(resp *http.Response, answer []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	var s string
	if json.Unmarshal(answer, &e) == nil && e.Error != "" {
		s = clean(e.Error) + ": " + clean(e.Message)
	} else {
		snippet := strings.TrimSpace(string(answer))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "…"
		}
		s = clean(resp.Status)
		if snippet != "" {
			s += ": " + clean(snippet)
		}
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		s += " (retry after " + clean(ra) + "s)"
	}
	return s
}

func (f *clientFlags) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return unavailable("no answer from %s within %s", f.Server, f.Timeout)
	}
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return unavailable("cannot reach the ledger at %s: %v", f.Server, err)
}

func (f *clientFlags) serverURL() (*url.URL, error) {
	u, err := url.Parse(f.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, cli.Usage("--server %q: want http(s)://host[:port][/path]", f.Server)
	}
	return u, nil
}

// bearer returns the token: --token/LEDGER_TOKEN, else the contents of
// $DATA_DIR/admin.token, trimmed.
func (f *clientFlags) bearer() (string, error) {
	token, from := strings.TrimSpace(f.Token), "--token/LEDGER_TOKEN"
	if token == "" {
		from = filepath.Join(f.DataDir, "admin.token")
		b, err := secfile.ReadFile(from, 4096)
		if errors.Is(err, secfile.ErrExposed) {
			return "", cli.Usage("%v", err)
		}
		if err != nil {
			return "", cli.Usage("no token: set --token or LEDGER_TOKEN, or --data-dir/DATA_DIR to a ledger's data directory (%v)", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", cli.Usage("%s is empty", from)
		}
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] >= 0x7f {
			return "", cli.Usage("the token from %s holds a space, a control character or non-ASCII", from)
		}
	}
	return token, nil
}

func readSmall(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	return b, err
}

func (f *clientFlags) httpClient() (*http.Client, error) {
	if f.Timeout <= 0 {
		return nil, cli.Usage("--timeout must be positive")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f.CAFile != "" {
		pem, err := readSmall(f.CAFile, 1<<20)
		if err != nil {
			return nil, cli.Usage("--ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, cli.Usage("--ca-file %s holds no PEM certificate", f.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: f.Timeout,
		// A redirect would resend the request elsewhere, a POST as a GET:
		// report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// print writes a 2xx answer in the chosen format.
func (f *clientFlags) print(env *cli.Env, answer []byte, status string) error {
	if f.Output == "table" {
		return printTable(env.Stdout, answer, status)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(answer), "", "  "); err != nil {
		return unavailable("the server answered %s with a body that is not JSON", status)
	}
	out.WriteByte('\n')
	_, err := env.Stdout.Write(out.Bytes())
	return err
}

// statusKeys is the order of a status payload's table lines.
var statusKeys = []string{"org", "status", "reason", "resolved_from", "license_id", "customer", "tier",
	"products", "features", "issued_at", "not_before", "expires", "grace_ends", "days_remaining",
	"users_limit", "users_active", "users_reported_at", "enforcement", "seq", "pending"}

// printTable prints a JSON object as "key  value" lines: a status payload
// in statusKeys order (then any other key, sorted), anything else sorted.
// null is "-", arrays are comma-joined, objects are key=value pairs.
func printTable(w io.Writer, answer []byte, status string) error {
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return unavailable("the server answered %s with a body that is not a JSON object", status)
	}
	var keys []string
	seen := map[string]bool{}
	if _, ok := m["status"]; ok {
		keys = append(keys, statusKeys...)
		for _, k := range statusKeys {
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range append(keys, rest...) {
		fmt.Fprintf(tw, "%s\t%s\n", clean(k), cell(m[k]))
	}
	return tw.Flush()
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return `""`
		}
		return clean(v)
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case []any:
		if len(v) == 0 {
			return "-"
		}
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = cell(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = clean(k) + "=" + cell(v[k])
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

// clean escapes what a terminal would interpret (control characters,
// invalid UTF-8, tabs that would break the table): license fields and
// server messages are data, not output formatting.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
