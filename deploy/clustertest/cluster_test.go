package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natsroletest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// Bounds of the waits. A new meta group usually elects a leader within a
// second; a failed first campaign falls back to raft's 4-9 s election
// timeout, which these bounds leave room for.
const (
	clusterTimeout = 30 * time.Second
	startTimeout   = 30 * time.Second
	eventTimeout   = 15 * time.Second
	deniedTimeout  = 1500 * time.Millisecond // how long a denied request waits for an answer that never comes
)

// The scaled deployment, from the shipped files: a three-node NATS cluster,
// PostgreSQL with roles.sql, two ledgers and two gatekeepers.
func TestScaledDeployment(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("drives the servers with Unix signals")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildBinaries(t)
	l := newLayout(t)

	t.Run("nats-server -t", func(t *testing.T) { checkConfigsWithServer(t, bin, l) })
	if t.Failed() {
		return
	}

	natsProcs, _, logins := startClusterAndDatabase(ctx, t, bin, l)

	// Credentials, as an operator distributes them.
	keys := t.TempDir()
	ledgerSeed := seedFile(t, keys, l.ledger, "ledger.nk")
	readerSeed := seedFile(t, keys, l.reader, "reader.nk")
	adminSeed := seedFile(t, keys, l.admin, "admin.nk")
	adminToken := randomHex(t, 20) // 40 characters
	tokensFile := filepath.Join(keys, "tokens")
	fileToken := createToken(t, bin, tokensFile, "deploy-bot")
	ring := licensetest.RingEntry("k1")

	ports := freePorts(t, 8)
	ledgerEnv := func(i int, dataDir string) map[string]string {
		return map[string]string{
			"NATS_URL": l.clientURLs(), "NATS_NKEY": ledgerSeed, "LICENSE_STREAM_REPLICAS": "3",
			"DATABASE_URL": logins.svcDSN, "LICENSE_PUBLIC_KEYS": ring,
			"LEDGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[i]), "DATA_DIR": dataDir, "LOG_LEVEL": "info",
		}
	}
	// The stream administrator creates the stream (deploy/nats/README.md,
	// "The stream"); the ledgers, which may not, find it. Ledger 1 also takes an
	// admin token; ledger 2 only the tokens file, copied to its host.
	applyStream(t, bin, l, adminSeed, natsProcs)
	data1, data2 := t.TempDir(), t.TempDir()
	env1 := ledgerEnv(0, data1)
	env1["LEDGER_ADMIN_TOKEN"], env1["LEDGER_TOKENS_FILE"] = adminToken, tokensFile
	api1 := "http://" + env1["LEDGER_LISTEN"]
	diag := func() string { return consumerState(l) }
	ledger1 := &service{name: "ledger-1", bin: bin.ledger, args: []string{"serve"}, env: env1, readyURL: api1 + "/readyz", diag: diag}
	ledger1.start(t)
	ledger1.waitReady(t, natsProcs)

	env2 := ledgerEnv(1, data2)
	env2["LEDGER_TOKENS_FILE"] = copyFile(t, tokensFile, filepath.Join(data2, "tokens"))
	api2 := "http://" + env2["LEDGER_LISTEN"]
	ledger2 := &service{name: "ledger-2", bin: bin.ledger, args: []string{"serve"}, env: env2, readyURL: api2 + "/readyz", diag: diag}
	ledger2.start(t)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "org": r.Header.Get("X-License-Org"),
			"status": r.Header.Get("X-License-Status")})
	}))
	t.Cleanup(upstream.Close)
	var gks []gatekeeperAddrs
	var gkServices []*service
	for i := range 2 {
		a := gatekeeperAddrs{name: fmt.Sprintf("gatekeeper-%d", i+1), proxy: fmt.Sprintf("127.0.0.1:%d", ports[2+3*i]),
			authz: fmt.Sprintf("127.0.0.1:%d", ports[3+3*i]), admin: fmt.Sprintf("127.0.0.1:%d", ports[4+3*i])}
		env := map[string]string{
			"NATS_URL": l.clientURLs(), "NATS_NKEY": readerSeed, "LICENSE_PUBLIC_KEYS": ring, "DATA_DIR": t.TempDir(),
			"GATEKEEPER_LISTEN": a.proxy, "GATEKEEPER_UPSTREAM": upstream.URL,
			"GATEKEEPER_AUTHZ_LISTEN": a.authz, "GATEKEEPER_ADMIN_LISTEN": a.admin, "LOG_LEVEL": "info",
		}
		if i == 1 {
			// A gatekeeper may use the read-only compliance user.
			env["DATABASE_URL"] = logins.complianceDSN
		}
		gks = append(gks, a)
		gk := &service{name: a.name, bin: bin.gatekeeper, env: env, readyURL: "http://" + a.admin + "/readyz", diag: diag}
		gk.start(t)
		gkServices = append(gkServices, gk)
	}
	ledger2.waitReady(t, append([]*process{ledger1.p}, natsProcs...))
	for _, gk := range gkServices {
		gk.waitReady(t, append([]*process{ledger1.p, ledger2.p}, natsProcs...))
	}
	all := append([]*process{ledger1.p, ledger2.p, gkServices[0].p, gkServices[1].p}, natsProcs...)

	ledgerNC := connect(t, l.clientURLs(), l.ledger)
	ledgerJS, err := jetstream.New(ledgerNC)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("stream has 3 replicas and the contract's configuration", func(t *testing.T) {
		waitFor(t, "3 current replicas of LICENSES", eventTimeout, all, func() error {
			s, err := ledgerJS.Stream(ctx, natsauth.DefaultStream)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			if info.Config.Replicas != 3 {
				t.Fatalf("stream replicas %d, want 3", info.Config.Replicas)
			}
			if err := natsbus.CheckConfig(info.Config); err != nil {
				t.Fatal(err)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("stream cluster %+v", info.Cluster)
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return fmt.Errorf("replica %s not current", r.Name)
				}
			}
			return nil
		})
	})

	for i, data := range []string{data1, data2} {
		if _, err := os.Stat(filepath.Join(data, "admin.token")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ledger-%d wrote an admin token although NATS_URL is set (%v)", i+1, err)
		}
	}

	// An upload through ledger 1's API.
	issued := time.Now().Add(-time.Hour).UTC()
	key := licensetest.Sign(t, "k1", map[string]any{
		"license_id": "0193a5b0-7e1a-7c3d-8f00-00000000c1a5", "customer": "Acme Corp", "org_slug": "acme",
		"tier": "enterprise", "features": []string{"sso"}, "issued_at": issued.Format(time.RFC3339),
		"expires": issued.Add(365 * 24 * time.Hour).Format(time.RFC3339), // no license.expiring notice moves the seqs on
	}).Key
	code, up := apiCall(t, "POST", api1+"/api/license?org=acme", adminToken, key)
	if code != 200 || up["status"] != "valid" {
		t.Fatalf("upload: %d %v", code, up)
	}
	seq, _ := up["seq"].(float64)
	if seq < 1 {
		t.Fatalf("upload seq %v", up["seq"])
	}
	minSeq := fmt.Sprint(int64(seq))

	t.Run("second ledger serves the upload with the shared tokens file", func(t *testing.T) {
		code, st := apiCall(t, "GET", api2+"/api/license?org=acme", fileToken, "")
		if code != 200 || st["status"] != "valid" || st["seq"] != up["seq"] {
			t.Fatalf("ledger-2 with the file token: %d %v (upload seq %v)", code, st, up["seq"])
		}
		if code, _ := apiCall(t, "GET", api1+"/api/license?org=acme", fileToken, ""); code != 200 {
			t.Fatalf("ledger-1 refuses the file token: %d", code)
		}
		if code, _ := apiCall(t, "GET", api2+"/api/license?org=acme", adminToken, ""); code != 401 {
			t.Fatalf("ledger-2 without LEDGER_ADMIN_TOKEN accepts it: %d", code)
		}
	})

	t.Run("both gatekeepers allow the licensed org", func(t *testing.T) {
		for _, gk := range gks {
			code, hdr, body := get(t, "http://"+gk.proxy+"/app/report", "X-Org-Slug", "acme", "X-License-Min-Seq", minSeq)
			if code != 200 || body["org"] != "acme" || body["status"] != "valid" {
				t.Fatalf("%s proxy: %d %v %v", gk.name, code, hdr, body)
			}
			code, hdr, _ = get(t, "http://"+gk.authz+"/authz", "X-Original-Method", "GET", "X-Original-URI", "/app/report",
				"X-Org-Slug", "acme", "X-License-Min-Seq", minSeq)
			if code != 200 || hdr.Get("X-License-Org") != "acme" || hdr.Get("X-License-Status") != "valid" {
				t.Fatalf("%s /authz: %d %v", gk.name, code, hdr)
			}
		}
	})

	t.Run("both gatekeepers deny an unlicensed org", func(t *testing.T) {
		for _, gk := range gks {
			// Enforcement latches on with the first license, in an event
			// after the upload: wait for it rather than racing it.
			waitFor(t, gk.name+" to deny", eventTimeout, all, func() error {
				code, hdr, body := get(t, "http://"+gk.proxy+"/app/report", "X-Org-Slug", "nolicense")
				if code != 403 || body["error"] != "license_missing" || hdr.Get("X-License-Error") != "license_missing" {
					return fmt.Errorf("proxy: %d %v", code, body)
				}
				return nil
			})
			code, hdr, _ := get(t, "http://"+gk.authz+"/authz", "X-Original-Method", "GET", "X-Original-URI", "/app/report",
				"X-Org-Slug", "nolicense")
			if code != 403 || hdr.Get("X-License-Error") != "license_missing" {
				t.Fatalf("%s /authz: %d %v", gk.name, code, hdr)
			}
		}
	})

	t.Run("the projector writes the row into PostgreSQL", func(t *testing.T) {
		comp := pgtest.NewPool(t, logins.complianceDSN)
		waitFor(t, "org_licenses row of acme at seq "+minSeq, eventTimeout, all, func() error {
			err := rowAt(ctx, comp, "acme", int64(seq))
			if err != nil {
				err = fmt.Errorf("%w; %s", err, projectorState(ctx, comp, l, api1, api2))
			}
			return err
		})
		for _, api := range []string{api1, api2} {
			if _, rd := apiCall(t, "GET", api+"/readyz", "", ""); rd["store"] != "postgres" || rd["nats"] != "ok" {
				t.Fatalf("%s/readyz: %v", api, rd)
			}
		}
	})

	t.Run("the reader can neither append nor delete", func(t *testing.T) {
		checkReaderIsReadOnly(t, ctx, l, ledgerJS)
	})

	// Two ledgers started: two ledger.started on licenses.audit._instance,
	// the history a per-subject limit of one would cut.
	t.Run("each identity, from outside", func(t *testing.T) {
		natsroletest.Check(t, natsroletest.Target{URL: l.clientURLs(), LedgerSeed: ledgerSeed, ReaderSeed: readerSeed,
			AdminSeed: adminSeed, NATSCLI: bin.natsCLI, Subject: "licenses.audit._instance", Replicas: 3})
	})
}

// applyStream runs `ledger stream apply` as deploy/nats/README.md shows it: the stream
// administrator's seed, NATS_URL and LICENSE_STREAM_REPLICAS=3.
func applyStream(t *testing.T, bin binaries, l *layout, adminSeed string, natsProcs []*process) {
	t.Helper()
	p := proctest.Start(t, "ledger stream apply", bin.ledger, []string{"stream", "apply"}, map[string]string{
		"NATS_URL": l.clientURLs(), "NATS_NKEY": adminSeed, "LICENSE_STREAM_REPLICAS": "3", "DATA_DIR": t.TempDir(),
	})
	<-p.Exited()
	if code := p.ExitCode(); code != 0 || !strings.Contains(p.Output(), "stream LICENSES: created with the contract's configuration (3 replica(s))") {
		t.Fatalf("ledger stream apply: exit %d\n%s", code, p.Output())
	}
}

type gatekeeperAddrs struct{ name, proxy, authz, admin string }

// checkConfigsWithServer runs nats-server -t on every node file, on the
// optional break-glass variant, and on the shipped files as they are, which
// must be refused.
func checkConfigsWithServer(t *testing.T, bin binaries, l *layout) {
	test := func(conf string) (string, error) {
		out, err := exec.Command(bin.natsServer, "-t", "-c", conf).CombinedOutput()
		return string(out), err
	}
	breakGlass := newLayout(t, withBreakGlass)
	for _, conf := range []string{l.nodes[0].conf(), l.nodes[1].conf(), l.nodes[2].conf(), breakGlass.nodes[0].conf()} {
		if out, err := test(conf); err != nil || !strings.Contains(out, "is valid") {
			t.Errorf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
	}
	raw := t.TempDir()
	for _, f := range append([]string{"cluster.conf", "auth.conf"}, nodeFiles...) {
		write(t, filepath.Join(raw, f), shipped(t, "deploy/nats/"+f), 0o600)
	}
	for _, f := range nodeFiles {
		if out, err := test(filepath.Join(raw, f)); err == nil || !strings.Contains(out, "Not a valid public nkey") {
			t.Errorf("the shipped %s with its placeholders: %v\n%s", f, err, out)
		}
	}
}

// waitForCluster waits until every node agrees on a JetStream meta leader
// of a three-node group whose followers are current, answers /healthz, and
// the ledger user gets account information.
// startClusterAndDatabase starts l's NATS nodes and, while the cluster
// forms, a fresh database migrated and set up with roles.sql; it returns
// once the cluster has formed, with the nodes' processes, the database's
// superuser DSN and its logins.
func startClusterAndDatabase(ctx context.Context, t *testing.T, bin binaries, l *layout) ([]*process, string, pgLogins) {
	t.Helper()
	var procs []*process
	for _, n := range l.nodes {
		procs = append(procs, startProcess(t, n.name, bin.natsServer, []string{"-c", n.conf()}, nil))
	}
	super := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, super, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	logins := applyRolesSQL(t, super, 1)
	formed := time.Now()
	waitForCluster(t, l, procs)
	t.Logf("cluster formed (%s after PostgreSQL was ready)", time.Since(formed).Round(time.Millisecond))
	return procs, super, logins
}

func waitForCluster(t *testing.T, l *layout, procs []*process) {
	t.Helper()
	waitFor(t, "a JetStream meta leader with 3 peers", clusterTimeout, procs, func() error {
		leader := ""
		for _, n := range l.nodes {
			var jsz struct {
				Meta *struct {
					Leader   string `json:"leader"`
					Size     int    `json:"cluster_size"`
					Replicas []struct {
						Name    string `json:"name"`
						Current bool   `json:"current"`
					} `json:"replicas"`
				} `json:"meta_cluster"`
			}
			if err := getJSON(n.monitor()+"/jsz", &jsz); err != nil {
				return err
			}
			m := jsz.Meta
			switch {
			case m == nil || m.Leader == "":
				return fmt.Errorf("%s: no meta leader yet", n.name)
			case m.Size != len(l.nodes):
				return fmt.Errorf("%s: meta group of %d", n.name, m.Size)
			case leader != "" && m.Leader != leader:
				return fmt.Errorf("nodes disagree on the leader: %s, %s", leader, m.Leader)
			}
			leader = m.Leader
			if n.name == m.Leader {
				current := 0
				for _, r := range m.Replicas {
					if r.Current {
						current++
					}
				}
				if current != len(l.nodes)-1 {
					return fmt.Errorf("leader %s: %d current followers", n.name, current)
				}
			}
		}
		for _, n := range l.nodes {
			resp, err := httpClient.Get(n.monitor() + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s /healthz: %d", n.name, resp.StatusCode)
			}
		}
		nc, err := nats.Connect(l.clientURLs(), nkeyOption(t, l.ledger), nats.Timeout(time.Second),
			nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.RoleLedger)))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
}

// checkReaderIsReadOnly tries what §3.1 forbids the reader, checks the
// server refused each for lack of permission, and that nothing changed.
func checkReaderIsReadOnly(t *testing.T, ctx context.Context, l *layout, ledgerJS jetstream.JetStream) {
	var mu sync.Mutex
	var violations []string
	record := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		defer mu.Unlock()
		violations = append(violations, err.Error())
	})
	nc := connect(t, l.clientURLs(), l.reader, record)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A reader can read: the permissions are not simply broken.
	if _, err := js.Stream(ctx, natsauth.DefaultStream); err != nil {
		t.Fatalf("the reader cannot read the stream: %v", err)
	}
	denied := func(what string, op func(context.Context) error) {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, deniedTimeout)
		defer cancel()
		if err := op(dctx); err == nil {
			t.Errorf("the reader could %s", what)
		}
	}
	var wg sync.WaitGroup
	for what, op := range map[string]func(context.Context) error{
		"publish to licenses.org.x": func(ctx context.Context) error {
			_, err := js.Publish(ctx, "licenses.org.x", []byte(`{"type":"license.removed"}`))
			return err
		},
		"delete the stream": func(ctx context.Context) error { return js.DeleteStream(ctx, natsauth.DefaultStream) },
		"purge the stream": func(ctx context.Context) error {
			s, err := js.Stream(ctx, natsauth.DefaultStream)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		},
		"update the stream": func(ctx context.Context) error {
			cfg := natsbus.StreamConfig(natsauth.DefaultStream, 3)
			cfg.DenyDelete = false
			_, err := js.UpdateStream(ctx, cfg)
			return err
		},
	} {
		wg.Go(func() { denied(what, op) })
	}
	wg.Wait()
	nc.Flush()
	mu.Lock()
	for _, subject := range []string{`"licenses.org.x"`, `"$JS.API.STREAM.DELETE.LICENSES"`, `"$JS.API.STREAM.PURGE.LICENSES"`, `"$JS.API.STREAM.UPDATE.LICENSES"`} {
		found := false
		for _, v := range violations {
			found = found || (strings.Contains(v, "ermissions violation") && strings.Contains(v, subject))
		}
		if !found {
			t.Errorf("the server reported no permissions violation for publish to %s (reported: %q)", subject, violations)
		}
	}
	mu.Unlock()

	// Nothing happened: the stream is there, protected, without the message.
	s, err := ledgerJS.Stream(ctx, natsauth.DefaultStream)
	if err != nil {
		t.Fatalf("the stream is gone: %v", err)
	}
	if err := natsbus.CheckConfig(s.CachedInfo().Config); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(ctx, "licenses.org.x"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("licenses.org.x on the stream: %v", err)
	}
	// Unauthenticated clients are refused outright.
	if nc, err := nats.Connect(l.clientURLs(), nats.Timeout(time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
}

func nkeyOption(t testing.TB, id natsauth.Identity) nats.Option {
	t.Helper()
	opt, err := natsauth.ConnectOption(id.Seed)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// connect opens a connection as id, with the inbox prefix of its role, to
// any node, closed when the test ends.
func connect(t testing.TB, urls string, id natsauth.Identity, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, append([]nats.Option{nkeyOption(t, id), nats.Timeout(2 * time.Second),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(id.Role))}, opts...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", id.Role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// createToken runs `ledger token create` on the tokens file, as an operator
// does before distributing it, and returns the token.
func createToken(t *testing.T, bin binaries, file, name string) string {
	t.Helper()
	cmd := exec.Command(bin.ledger, "token", "create", "--no-wait", "--role", "operator", "--name", name)
	cmd.Env = childEnv(map[string]string{"LEDGER_TOKENS_FILE": file})
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ledger token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	if len(token) < 32 {
		t.Fatalf("ledger token create printed %q", out)
	}
	return token
}

func copyFile(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, string(b), 0o600)
	return to
}

func rowAt(ctx context.Context, pool *pgxpool.Pool, org string, seq int64) error {
	var last int64
	var licenseID *string
	err := pool.QueryRow(ctx, `SELECT last_seq, license_id::text FROM org_licenses WHERE org_slug = $1`, org).Scan(&last, &licenseID)
	if err != nil {
		return err
	}
	if last != seq || licenseID == nil || *licenseID != "0193a5b0-7e1a-7c3d-8f00-00000000c1a5" {
		return fmt.Errorf("row of %s at seq %d with license %v, want seq %d", org, last, licenseID, seq)
	}
	return nil
}

var httpClient = proctest.HTTPClient

// apiCall sends a ledger API request and decodes its JSON answer.
func apiCall(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// get sends a GET with header pairs and decodes a JSON body if there is one.
func get(t *testing.T, url string, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// projectorState describes the projection's progress, for failures.
func projectorState(ctx context.Context, pool *pgxpool.Pool, l *layout, apis ...string) string {
	var b strings.Builder
	var rows, checkpoint int64
	pool.QueryRow(ctx, `SELECT count(*) FROM license_audit`).Scan(&rows)
	pool.QueryRow(ctx, `SELECT coalesce(max(last_seq), -1) FROM projection_checkpoints`).Scan(&checkpoint)
	fmt.Fprintf(&b, "license_audit rows %d, checkpoint %d", rows, checkpoint)
	for _, api := range apis {
		var rd map[string]any
		getJSON(api+"/readyz", &rd)
		fmt.Fprintf(&b, "; %s/readyz %v", api, rd)
	}
	b.WriteString("; ")
	b.WriteString(consumerState(l))
	return b.String()
}

// consumerState lists every consumer of the stream as the nodes see it. A
// consumer with messages pending and no pull request waiting is stalled:
// its client is not asking for messages.
func consumerState(l *layout) string {
	var b strings.Builder
	b.WriteString("consumers (stalled if pending > 0 and waiting 0):")
	for _, n := range l.nodes {
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name      string `json:"name"`
					Consumers []struct {
						Name      string `json:"name"`
						Delivered struct {
							Stream uint64 `json:"stream_seq"`
						} `json:"delivered"`
						NumPending uint64 `json:"num_pending"`
						NumWaiting int    `json:"num_waiting"`
					} `json:"consumer_detail"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		getJSON(n.monitor()+"/jsz?accounts=true&streams=true&consumers=true", &jsz)
		fmt.Fprintf(&b, " %s:", n.name)
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				for _, c := range s.Consumers {
					fmt.Fprintf(&b, " %s(delivered %d, pending %d, waiting %d)", c.Name, c.Delivered.Stream, c.NumPending, c.NumWaiting)
				}
			}
		}
	}
	return b.String()
}
