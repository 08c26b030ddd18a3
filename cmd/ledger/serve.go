package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/buildinfo"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/keyringmetric"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/secfile"
	"github.com/licenseledger/ledger/internal/tick"
	"github.com/licenseledger/ledger/internal/webui"
	"github.com/licenseledger/ledger/internal/witness"
	"github.com/licenseledger/ledger/license"
)

type serveCmd struct {
	cli.KeyringFlags
	cli.LogFlags
	cli.NATSConn
	Listen              string        `env:"LEDGER_LISTEN" default:"127.0.0.1:8080" help:"HTTP API address."`
	DataDir             string        `env:"DATA_DIR" default:"./data" help:"State directory: embedded NATS store and credentials, admin token."`
	NATSListenTLSCert   string        `name:"nats-listen-tls-cert" env:"LEDGER_NATS_TLS_CERT" placeholder:"FILE" help:"Serve the embedded NATS over TLS with this certificate (required when --nats-listen is not loopback: off loopback the embedded NATS needs --nats-listen-tls-cert/--nats-listen-tls-key; clients set NATS_TLS_CA)."`
	NATSListenTLSKey    string        `name:"nats-listen-tls-key" env:"LEDGER_NATS_TLS_KEY" placeholder:"FILE" help:"Key of --nats-listen-tls-cert."`
	NATSSync            string        `name:"nats-sync" env:"LEDGER_NATS_SYNC" enum:"always,interval" default:"always" help:"Embedded JetStream fsync: always (an acknowledged event survives a host crash) or interval."`
	Replicas            int           `name:"stream-replicas" env:"LICENSE_STREAM_REPLICAS" default:"1" help:"The stream's replicas in the contract (3 in clusters): the embedded server creates it so, and a stream with another count is reported as drift."`
	StreamCheck         time.Duration `name:"stream-check-interval" env:"LEDGER_STREAM_CHECK_INTERVAL" default:"1m" help:"How often to compare the stream's configuration with the contract's; a difference is logged, exported (ledger_stream_config_drift), fails /readyz and is audited."`
	GraceDays           int           `env:"LICENSE_GRACE_DAYS" default:"7" help:"Grace for licenses without grace_days, recorded at upload."`
	LicenseFile         string        `name:"license-file" env:"LICENSE_FILE" placeholder:"FILE" help:"Install-time license file (either form), imported into _instance at start; default $DATA_DIR/license.json or license.key."`
	LicenseKey          string        `name:"license-key" env:"LICENSE_KEY" placeholder:"KEY" help:"Install-time license as a compact key (instead of a file)."`
	IgnoreClockRollback bool          `name:"ignore-clock-rollback" env:"LEDGER_IGNORE_CLOCK_ROLLBACK" help:"Start even though this clock is more than 5 minutes behind the newest event (recorded in ledger.started)."`
	ScheduleInterval    time.Duration `name:"schedule-interval" env:"LEDGER_SCHEDULE_INTERVAL" default:"1s" help:"How often the expiry scheduler looks for due expiring/grace_started/expired events."`
	ExpiryNoticeDays    string        `name:"expiry-notice-days" env:"LICENSE_EXPIRY_NOTICE_DAYS" default:"30,14,7,1" placeholder:"DAYS,…" help:"Days ahead of a license's expiry at which the scheduler appends a license.expiring notice, once each (1..365, comma-separated), or off."`
	DigestInterval      time.Duration `name:"digest-interval" env:"LEDGER_DIGEST_INTERVAL" default:"1h" help:"How often to log the audit trail's digest: an 'audit digest' line with digest=seq:hex and rows=N. 0 = never."`
	CheckpointKey       string        `name:"checkpoint-key" env:"LEDGER_CHECKPOINT_KEY_FILE" placeholder:"FILE" help:"The install's Ed25519 key that signs the audit trail's checkpoints (note format), created mode 0600 at first start; default $DATA_DIR/checkpoint.key. Scaled installs give every ledger the same file."`
	CheckpointInterval  time.Duration `name:"checkpoint-interval" env:"LEDGER_CHECKPOINT_INTERVAL" default:"1m" help:"How often to sign a checkpoint of the audit trail's Merkle tree, when it has grown."`
	Witnesses           []string      `name:"witness" env:"LEDGER_WITNESSES" sep:";" placeholder:"[VKEY ]URL" help:"Send every checkpoint to this C2SP tlog-witness (POST URL/add-checkpoint), after the witness's verifier key to check its cosignatures; repeat the flag, or separate entries with ';' in the variable. A witness that refuses a checkpoint (a fork) is logged at error level, counted and shown on /readyz."`
	CheckpointArchive   string        `name:"checkpoint-archive" env:"LEDGER_CHECKPOINT_ARCHIVE" placeholder:"DIR" help:"Also write every checkpoint, with the witnesses' cosignatures, to DIR (one file each; a mounted bucket or an archive outside the install)."`
	AdminToken          string        `env:"LEDGER_ADMIN_TOKEN" placeholder:"TOKEN" help:"An operator token (at least 32 characters)."`
	TokensFile          string        `name:"tokens-file" env:"LEDGER_TOKENS_FILE" placeholder:"FILE" help:"Tokens file: '<sha256 hex> <role> <orgs|*> <name>' lines, mode 0600, re-read within a second of a change (default: $DATA_DIR/tokens). Edit it with ledger token."`
	RateLimit           string        `name:"rate-limit" env:"LEDGER_RATE_LIMIT" default:"20/s:100" placeholder:"RATE[/s|/m|/h][:BURST]" help:"Requests per API token: RATE per second, or per minute (/m) or hour (/h), then :BURST (100 when omitted). Default 20/s:100; off for no limit. Over it: 429 rate_limited with Retry-After."`
	RejectAudit         int           `name:"reject-audit-rate" env:"LEDGER_REJECT_AUDIT_RATE" default:"10" help:"license.rejected events per org per minute; more are summarised."`
	UsageRate           int           `name:"usage-rate" env:"LEDGER_USAGE_RATE" default:"60" help:"Usage changes (usage.reported) recorded per org per hour, in bursts of up to a sixth of that; a report of the number already recorded never counts. Past it: 429 rate_limited with Retry-After."`
	TLSCert             string        `name:"tls-cert" env:"LEDGER_TLS_CERT" placeholder:"FILE" help:"Serve HTTPS with this certificate."`
	TLSKey              string        `name:"tls-key" env:"LEDGER_TLS_KEY" placeholder:"FILE" help:"Key of --tls-cert."`
	InsecureHTTP        bool          `name:"insecure-http" env:"LEDGER_INSECURE_HTTP" help:"Allow plain HTTP on a non-loopback --listen."`
	ShutdownWait        time.Duration `name:"shutdown-timeout" env:"LEDGER_SHUTDOWN_TIMEOUT" default:"10s" help:"How long to drain requests on SIGTERM."`
	DatabaseURL         string        `name:"database-url" env:"DATABASE_URL" placeholder:"URL" help:"PostgreSQL for the read model and audit, as a login user granted ledger_app (not the owner). Unset: both are kept in memory."`
	AllowOwner          bool          `name:"allow-owner" env:"LEDGER_ALLOW_OWNER" help:"Development only: accept a DATABASE_URL user that owns license_audit or may rewrite it (logged as a warning)."`

	noticeDays []int // ExpiryNoticeDays, parsed by validate
	// wrapAPI, when set (tests only), wraps the API's handler: the tests
	// check every request and answer against the OpenAPI document.
	wrapAPI func(http.Handler) http.Handler
	// now is the service's clock (tests); nil: time.Now.
	now func() time.Time
}

func (c *serveCmd) validate() error {
	if c.GraceDays < 0 || c.GraceDays > license.MaxGraceDays {
		return cli.Usage("LICENSE_GRACE_DAYS must be 0..%d", license.MaxGraceDays)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return cli.Usage("LICENSE_STREAM_REPLICAS must be 1..5")
	}
	days, err := ledger.ParseExpiryNoticeDays(c.ExpiryNoticeDays)
	if err != nil {
		return cli.Usage("LICENSE_EXPIRY_NOTICE_DAYS (--expiry-notice-days): %v; want days ahead of expiry like 30,14,7,1, or off", err)
	}
	c.noticeDays = days
	if c.UsageRate < 1 {
		return cli.Usage("LEDGER_USAGE_RATE (--usage-rate) must be at least 1 usage change per org per hour")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return cli.Usage("--tls-cert and --tls-key go together")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return cli.Usage("--listen %q: %v", c.Listen, err)
	}
	if c.TLSCert == "" && !c.InsecureHTTP && !isLoopback(host) {
		return cli.Usage("--listen %s is not loopback: serve TLS (--tls-cert/--tls-key) or pass --insecure-http", c.Listen)
	}
	if c.NATSURL == "" {
		// The embedded NATS carries license keys and org names too.
		if err := natsembed.CheckListen(c.NATSListen, c.NATSListenTLSCert, c.NATSListenTLSKey); err != nil {
			return cli.Usage("%v", err)
		}
	}
	if c.StreamCheck < 0 {
		return cli.Usage("--stream-check-interval must be positive")
	}
	// The listeners' private keys are secrets like the seeds: refused when
	// group or others may read them.
	for _, k := range []struct{ flag, path string }{{"--tls-key", c.TLSKey}, {"--nats-listen-tls-key", c.NATSListenTLSKey}} {
		if k.path == "" {
			continue
		}
		f, err := secfile.Open(k.path)
		if err != nil {
			return cli.Usage("%s: %v", k.flag, err)
		}
		f.Close()
	}
	return nil
}

func isLoopback(host string) bool { return natsembed.IsLoopback(host) }

func (c *serveCmd) Run(env *cli.Env) error {
	if err := c.validate(); err != nil {
		return err
	}
	log, err := c.Logger(env.Stderr)
	if err != nil {
		return err
	}
	cli.SetMemoryLimit(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.serve(ctx, env, log, nil)
}

// serve runs the ledger until ctx ends. started, if set, receives the
// bound API address once the ledger is ready (tests).
func (c *serveCmd) serve(ctx context.Context, env *cli.Env, log *slog.Logger, started chan<- string) error {
	keys, err := c.KeyringFlags.Load()
	if err != nil {
		return cli.Usage("key ring: %v", err)
	}
	if keys.Ring().Len() == 0 {
		log.Warn("no trusted vendor keys: every upload will be rejected (set LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE)")
	}
	watcher, err := c.tokens(ctx, log)
	if err != nil {
		return err
	}
	tokens := watcher.Tokens()
	conn, shutdownNATS, err := c.connect(ctx, log)
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	defer shutdownNATS()
	defer conn.Close()

	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	bus, info, err := conn.Open(octx, c.Stream, c.Replicas, false, natsbus.WithLogger(log))
	cancel()
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Read(version).Collector("ledger"))
	keyringInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_keyring_info",
		Help: "The trusted key ring: 1 for the current fingerprint."}, []string{"fingerprint"})
	reg.MustRegister(keyringInfo, keyringmetric.Collector(keys)) // license_keyring_info: the name every process shares
	keyringInfo.WithLabelValues(keys.Ring().Fingerprint()).Set(1)
	registerTokensFileMetrics(reg, watcher)

	svc := ledger.New(ledger.Config{Store: bus, Keys: keys, DefaultGraceDays: c.GraceDays,
		RejectAuditPerMinute: c.RejectAudit, UsageReportsPerHour: c.UsageRate, ExpiryNoticeDays: c.noticeDays, Version: version, Logger: log, Metrics: ledger.NewMetrics(reg), Now: c.now})
	if err := svc.AdoptInstallID(ctx); err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	rm, err := c.openReadModel(ctx, svc, bus, info, reg, log)
	if err != nil {
		return err
	}
	defer rm.close()
	fol := newFollower(bus, svc, rm.trail, info, rm.from, log)
	lag := func() float64 { return float64(fol.Lag()) }
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_projector_lag_events",
		Help: "Stream head minus the last sequence folded into the read model, in events."}, lag),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_projector_lag",
			Help: "Deprecated: ledger_projector_lag_events, the same value with its unit in the name; removed in the next release."}, lag))
	reg.MustRegister(svc.OrgsCollector()) // ledger_orgs{status}, ledger_orgs_expiring{within}, …
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_orgs_unverified",
		Help: "Orgs whose license key this ledger has not verified yet (verified in the background after a start, and before any read)."},
		func() float64 { return float64(svc.UnverifiedOrgs()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_stream_last_seq",
		Help: "Stream head at the last check."}, func() float64 { return float64(fol.Head()) }))
	mon := newStreamMonitor(bus, svc, c.Stream, c.Replicas, reg, log)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	// The catch-up holds keys unverified; they are verified on every core
	// once it is done, and any read verifies what it returns first.
	svc.DeferVerification(true)
	began := time.Now()
	go fol.Run(runCtx)
	select {
	case <-fol.loaded:
	case <-ctx.Done():
		return nil
	}
	svc.DeferVerification(false)
	// The catch-up's garbage (decoded events) goes back to the system
	// before the ledger serves: it is most of the heap at this point.
	debug.FreeOSMemory()
	log.Info("stream folded", "applied", fol.Applied(), "took", time.Since(began).Round(time.Millisecond))
	go func() {
		began := time.Now()
		n := svc.VerifyDeferred(runCtx)
		debug.FreeOSMemory() // what the catch-up and the verification freed
		log.Info("every license verified", "orgs", n, "took", time.Since(began).Round(time.Millisecond))
	}()
	if err := svc.Start(ctx, events.LedgerStarted{IgnoredRollback: c.IgnoreClockRollback}); err != nil {
		if errors.Is(err, ledger.ErrClockRollback) {
			return err
		}
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	if err := svc.ImportInstallLicense(ctx, ledger.InstallSource{File: c.LicenseFile, Key: c.LicenseKey, DataDir: c.DataDir}); err != nil {
		return err
	}
	mon.check(ctx)
	log.Info("ledger started", "install_id", svc.InstallID(), "keyring_fingerprint", keys.Ring().Fingerprint(),
		"keys", keys.Ring().Len(), "stream", c.Stream, "events", info.LastSeq, "version", version)

	keys.ReloadOnSIGHUP(runCtx, log, func(r *license.Ring) {
		keyringInfo.Reset()
		keyringInfo.WithLabelValues(r.Fingerprint()).Set(1)
		svc.Reverify(runCtx)
	})
	go tick.Every(runCtx, time.Minute, func() { svc.FlushSuppressed(runCtx, false) })
	go tick.Every(runCtx, cmp.Or(c.StreamCheck, time.Minute), func() { mon.check(runCtx) })
	go svc.RunScheduler(runCtx, c.ScheduleInterval)
	go audit.LogDigests(runCtx, rm.reader, c.DigestInterval, log)
	cpKey, cpStore, err := c.openCheckpoints(rm, svc.InstallID(), log)
	if err != nil {
		return err
	}
	wit, err := c.witnesses(rm, reg, log)
	if err != nil {
		return err
	}
	cpSize := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_audit_checkpoint_tree_size",
		Help: "Tree size of the last audit checkpoint this ledger signed."})
	cpTime := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_audit_checkpoint_signed_timestamp_seconds",
		Help: "When this ledger last signed an audit checkpoint (Unix seconds): alert when the trail grows and this does not move."})
	reg.MustRegister(cpSize, cpTime)
	go (&audit.Checkpointer{Key: cpKey, Tree: rm.tree, Store: cpStore, Interval: c.CheckpointInterval, Logger: log,
		OnSigned: func(ctx context.Context, cp audit.Checkpoint) {
			cpSize.Set(float64(cp.Size))
			cpTime.Set(float64(cp.SignedAt.UnixNano()) / 1e9)
			wit.Send(ctx, cp)
		}}).Run(runCtx)
	if rm.projector != nil {
		go rm.projector.Run(runCtx)
	}

	api := httpapi.New(httpapi.Config{Service: svc, Tokens: tokens, Registry: reg, Logger: log, Audit: rm.reader,
		StreamMsg: rm.streamLookups(bus), Tree: rm.tree, Checkpoints: cpStore, CheckpointKey: cpKey.VerifierKey(),
		Readiness: func(context.Context) httpapi.Readiness {
			rd := httpapi.Readiness{NATS: "ok", Store: rm.store, ProjectorLag: fol.Lag(), OrgsUnverified: svc.UnverifiedOrgs(),
				TokensFile: httpapi.ReportTokensFile(watcher.Status()), AuditWitnesses: wit.Statuses()}
			if rm.projector != nil {
				rd.ProjectorLag = rm.projector.Lag()
				if err := rm.projector.Stopped(); err != nil {
					rd.Projector = "stopped: " + err.Error()
				}
			}
			if !fol.Reachable() || !conn.Connected() {
				rd.NATS = "unavailable"
			}
			var drift bool
			rd.Stream, drift = mon.readiness()
			rd.Ready = rd.NATS == "ok" && !drift // PostgreSQL never makes the ledger unready
			return rd
		}})
	// The web UI under /ui/ (and / redirecting there) in front of the API.
	h := api.Handler()
	if c.wrapAPI != nil {
		h = c.wrapAPI(h)
	}
	err = c.listenAndServe(ctx, webui.Wrap(h), log, started)
	// Rejections the rate limit dropped since the last tick are counted on
	// the stream before NATS goes: a shutdown loses no audit count.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	svc.FlushSuppressed(fctx, true)
	return err
}

// connect reaches NATS: NATS_URL, else an embedded server, whose stream
// it first creates or brings up to date as the stream administrator
// (Embedded.Bootstrap). The connection it returns is the ledger's, which
// may not change the stream's configuration.
func (c *serveCmd) connect(ctx context.Context, log *slog.Logger) (*natsbus.Conn, func(), error) {
	if c.NATSURL != "" {
		conn, err := natsbus.Dial(c.ConnConfig("ledger", natsauth.RoleLedger, log))
		return conn, func() {}, err
	}
	emb, err := natsembed.Start(natsembed.Config{DataDir: c.DataDir, Listen: c.NATSListen,
		TLSCert: c.NATSListenTLSCert, TLSKey: c.NATSListenTLSKey,
		SyncAlways: c.NATSSync == "always", Stream: c.Stream, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if err := c.bootstrap(ctx, emb, log); err != nil {
		emb.Shutdown()
		return nil, nil, err
	}
	cfg := c.ConnConfig("ledger", natsauth.RoleLedger, log)
	cfg.NKeyFile, cfg.InProcess = emb.LedgerSeedFile, emb.Server
	conn, err := natsbus.Dial(cfg)
	if err != nil {
		emb.Shutdown()
		return nil, nil, err
	}
	log.Info("embedded NATS running", "listen", c.NATSListen, "tls", c.NATSListenTLSCert != "", "store", filepath.Join(c.DataDir, "nats"),
		"sync", c.NATSSync, "reader_credentials", emb.ReaderSeedFile, "admin_credentials", emb.AdminSeedFile)
	return conn, emb.Shutdown, nil
}

// bootstrap creates the embedded server's stream on first start, and
// applies what this release changes in its configuration; anything else
// that differs is left for the stream check to report.
func (c *serveCmd) bootstrap(ctx context.Context, emb *natsembed.Embedded, log *slog.Logger) error {
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := emb.Bootstrap(bctx, c.Stream, c.Replicas)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.Stream, err)
	}
	switch {
	case res.Created:
		log.Info("stream created with the contract's configuration", "stream", c.Stream, "replicas", c.Replicas)
	case len(res.Changed) > 0:
		for _, f := range res.Changed {
			log.Info("stream configuration upgraded", "stream", c.Stream, "field", f.Field, "was", f.Actual, "now", f.Expected)
		}
	}
	return nil
}

// tokens builds the live token set: LEDGER_ADMIN_TOKEN; on a single node
// (no NATS_URL) $DATA_DIR/admin.token, generated when no token is set and
// the tokens file holds no token line; and the tokens file, re-read while
// ctx lasts. Every token is held to LEDGER_RATE_LIMIT. A tokens file with
// problems does not stop the start: it grants what it would while running.
func (c *serveCmd) tokens(ctx context.Context, log *slog.Logger) (*auth.Watcher, error) {
	limit, err := auth.ParseRateLimit(c.RateLimit)
	if err != nil {
		return nil, cli.Usage("LEDGER_RATE_LIMIT %v", err)
	}
	file := c.TokensFile
	if file == "" {
		file = filepath.Join(c.DataDir, "tokens")
	}
	// A file with broken lines, or refused as a whole, was meant to hold
	// tokens: it does not call for a generated one.
	parsed, err := auth.ReadLines(file)
	fileMeantTokens := (err != nil && !errors.Is(err, fs.ErrNotExist)) || len(parsed.Entries)+len(parsed.Broken) > 0
	list := []string{c.AdminToken}
	if c.NATSURL == "" {
		path := filepath.Join(c.DataDir, "admin.token")
		_, statErr := os.Stat(path)
		if (c.AdminToken == "" && !fileMeantTokens) || statErr == nil {
			if statErr == nil {
				// Refused like every exposed secret: exit 2, the fix named.
				f, err := secfile.Open(path)
				if err != nil {
					return nil, fmt.Errorf("admin token: %w", err)
				}
				f.Close()
			}
			tok, created, err := auth.LoadOrCreateAdminToken(path)
			if err != nil {
				return nil, fmt.Errorf("admin token: %w", err)
			}
			if created {
				log.Info("generated an operator token", "path", path)
			}
			list = append(list, tok)
		}
	}
	admin, err := auth.AdminSet(list...)
	if err != nil {
		return nil, cli.Usage("LEDGER_ADMIN_TOKEN: %v", err)
	}
	w := auth.NewWatcher(file, admin, log)
	tokens := w.Tokens()
	tokens.SetRateLimit(limit)
	if tokens.Current().Len() == 0 {
		log.Warn("no API token in force: every API call is refused until one is (LEDGER_ADMIN_TOKEN, or ledger token create)", "tokens_file", file)
	}
	log.Info("API tokens", "admin", admin.Len(), "tokens_file", file, "file_tokens", w.Entries(), "rate_limit", limit.String())
	go w.Run(ctx, auth.PollInterval)
	return w, nil
}

// registerTokensFileMetrics exports the state of the tokens file:
// ledger_tokens_file_errors by kind (broken lines of each kind, 1 for the
// kind that refused the whole file) and ledger_tokens_file_tokens.
func registerTokensFileMetrics(reg *prometheus.Registry, w *auth.Watcher) {
	for _, kind := range auth.ProblemKinds {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_tokens_file_errors",
			Help:        "Problems of the tokens file by kind: lines that grant nothing (malformed, duplicate), or 1 when the whole file grants nothing (insecure, unreadable).",
			ConstLabels: prometheus.Labels{"kind": kind}},
			func() float64 { return float64(w.Status().Errors()[kind]) }))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_tokens_file_tokens",
		Help: "Tokens of the tokens file in force."}, func() float64 { return float64(w.Entries()) }))
}

func (c *serveCmd) listenAndServe(ctx context.Context, h http.Handler, log *slog.Logger, started chan<- string) error {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.Listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() {
		if c.TLSCert != "" {
			errc <- srv.ServeTLS(ln, c.TLSCert, c.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("API listening", "addr", ln.Addr().String(), "tls", c.TLSCert != "")
	if started != nil {
		started <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownWait)
	defer cancel()
	log.Info("shutting down")
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openCheckpoints loads (or creates) the checkpoint key, named after the
// install, and opens the store of signed checkpoints.
func (c *serveCmd) openCheckpoints(rm *readModel, installID string, log *slog.Logger) (*audit.CheckpointKey, audit.Checkpoints, error) {
	path := cmp.Or(c.CheckpointKey, filepath.Join(c.DataDir, "checkpoint.key"))
	key, created, err := audit.LoadCheckpointKey(path, audit.Origin(installID))
	if err != nil {
		return nil, nil, err
	}
	if created {
		log.Info("audit checkpoint key created", "file", path, "verifier_key", key.VerifierKey())
	}
	store, err := rm.checkpoints(c.DataDir)
	if err != nil {
		return nil, nil, err
	}
	return key, store, nil
}

// witnesses parses --witness and prepares the sending of checkpoints to
// them (and to --checkpoint-archive), with their metrics.
func (c *serveCmd) witnesses(rm *readModel, reg prometheus.Registerer, log *slog.Logger) (*witness.Sender, error) {
	s := &witness.Sender{Tree: rm.tree, Archive: c.CheckpointArchive, Logger: log}
	for _, w := range c.Witnesses {
		if strings.TrimSpace(w) == "" {
			continue
		}
		parsed, err := witness.Parse(w)
		if err != nil {
			return nil, cli.Usage("--witness: %v", err)
		}
		s.Witnesses = append(s.Witnesses, parsed)
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_audit_witness_requests_total",
		Help: "Checkpoints sent to each witness, by outcome: cosigned, fork (it refused: the trail may have been forked or rewritten), refused (it does not know this log), failed."},
		[]string{"witness", "outcome"})
	forks := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_audit_witness_fork",
		Help: "1 while a witness's last answer was a fork (a refused consistency proof, or a larger tree than the install's)."}, []string{"witness"})
	reg.MustRegister(requests, forks)
	for _, w := range s.Witnesses {
		for _, o := range []witness.Outcome{witness.Cosigned, witness.Fork, witness.Refused, witness.Failed} {
			requests.WithLabelValues(w.URL, string(o))
		}
		forks.WithLabelValues(w.URL).Set(0)
	}
	s.Count = func(url string, o witness.Outcome) {
		requests.WithLabelValues(url, string(o)).Inc()
		switch o {
		case witness.Fork:
			forks.WithLabelValues(url).Set(1)
		case witness.Cosigned:
			forks.WithLabelValues(url).Set(0)
		}
	}
	return s, nil
}
