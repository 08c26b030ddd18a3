package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/gatekeeper/frontend"
	"github.com/licenseledger/ledger/gatekeeper/natsstream"
	"github.com/licenseledger/ledger/internal/buildinfo"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/sighup"
	"github.com/licenseledger/ledger/license"
)

// gatekeeperCmd is the whole command line.
type gatekeeperCmd struct {
	Version kong.VersionFlag `help:"Print the version and exit."`
	cli.KeyringFlags
	cli.LogFlags
	cli.NATSConn

	Listen          string        `env:"GATEKEEPER_LISTEN" default:"127.0.0.1:8081" help:"Reverse proxy address (needs --upstream); off to disable."`
	Upstream        string        `env:"GATEKEEPER_UPSTREAM" placeholder:"URL" help:"The application behind the reverse proxy (http://host:port)."`
	AuthzListen     string        `name:"authz-listen" env:"GATEKEEPER_AUTHZ_LISTEN" default:"127.0.0.1:8082" help:"Address of /authz (for nginx, Caddy, Traefik, Envoy); off to disable."`
	AuthzHeaders    string        `name:"authz-headers" env:"GATEKEEPER_AUTHZ_HEADERS" enum:"original,forwarded,path" default:"original" help:"Where /authz reads the original request: original (X-Original-Method/-URI, nginx), forwarded (X-Forwarded-Method/-Uri, Caddy, Traefik) or path (the request's own method and the path after /authz, Envoy path_prefix)."`
	AdminListen     string        `name:"admin-listen" env:"GATEKEEPER_ADMIN_LISTEN" default:"127.0.0.1:9091" help:"Address of /healthz, /readyz and /metrics."`
	OrgFrom         string        `name:"org-from" env:"GATEKEEPER_ORG_FROM" default:"header:X-Org-Slug" help:"Where the org comes from: header:NAME, host:{org}.example.com or path:/orgs/{org}/."`
	TrustedProxies  []string      `name:"trusted-proxies" env:"GATEKEEPER_TRUSTED_PROXIES" default:"127.0.0.0/8,::1/128" help:"Peers (CIDRs) whose org header is honoured in header mode."`
	AllowNoOrg      bool          `name:"allow-no-org" env:"GATEKEEPER_ALLOW_NO_ORG" help:"Decide requests without an org on the instance-wide license instead of denying them."`
	Allow           []string      `env:"GATEKEEPER_ALLOW" sep:";" placeholder:"METHODS PATTERN" help:"More always-allowed routes, each with its methods: 'GET,HEAD /status' (a ServeMux pattern, matched exactly; the variable separates entries with ';')."`
	Features        string        `env:"GATEKEEPER_FEATURES" placeholder:"FILE" help:"Feature rules: '[METHOD ]PATTERN FEATURE[,FEATURE…]' per line."`
	SeatRoutes      string        `name:"seat-routes" env:"GATEKEEPER_SEAT_ROUTES" placeholder:"FILE" help:"Routes that consume a seat (add a user): '[METHOD ]PATTERN' per line, e.g. 'POST /api/users'. In seat mode soft an org at or over its users_limit gets X-License-Warning on them; in hard, 403 users_limit_reached (its other routes keep working)."`
	DecisionTimeout time.Duration `name:"decision-timeout" env:"GATEKEEPER_DECISION_TIMEOUT" default:"100ms" help:"After this the state counts as unavailable."`
	MinSeqWait      time.Duration `name:"min-seq-wait" env:"GATEKEEPER_MIN_SEQ_WAIT" default:"50ms" help:"How long a request with X-License-Min-Seq waits for the event before folding the org's subject."`
	MaxStaleness    time.Duration `name:"max-staleness" env:"GATEKEEPER_MAX_STALENESS" default:"30s" help:"Beyond this without confirming it is current, the replica stops trusting its cache for uncached orgs."`
	DataDir         string        `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Where the default reader credentials are ($DATA_DIR/nats/reader.nk)."`
	DatabaseURL     string        `name:"database-url" env:"DATABASE_URL" placeholder:"URL" help:"PostgreSQL read model (optional): faster start, reloads when stale."`
	Enforce         string        `name:"enforce" env:"LICENSE_ENFORCE" placeholder:"0|1" help:"Override the install's enforcement mode (logged and exported as a metric)."`
	ShutdownWait    time.Duration `name:"shutdown-timeout" env:"GATEKEEPER_SHUTDOWN_TIMEOUT" default:"10s" help:"How long to drain requests on SIGTERM."`

	// The allowlist.
	NoDefaultAllow bool   `name:"no-default-allow" env:"GATEKEEPER_NO_DEFAULT_ALLOW" help:"Drop the built-in allowlist (health probes and GET/POST /api/license); only --allow and --allow-ui entries pass."`
	AllowUI        string `name:"allow-ui" env:"GATEKEEPER_ALLOW_UI" placeholder:"PREFIX" help:"Allowlist the ledger's own UI under PREFIX (e.g. /ui/), GET and HEAD only."`

	// The org from a verified JWT (--org-from jwt:CLAIM).
	JWTKeys     string `name:"jwt-keys" env:"GATEKEEPER_JWT_KEYS" placeholder:"FILE_OR_URL" help:"JWKS of the platform's token issuer: a file (re-read on SIGHUP) or an http(s) URL (refreshed by its cache headers, and on an unknown kid)."`
	JWTIssuer   string `name:"jwt-issuer" env:"GATEKEEPER_JWT_ISSUER" help:"The iss every token must carry (jwt mode)."`
	JWTAudience string `name:"jwt-audience" env:"GATEKEEPER_JWT_AUDIENCE" help:"The aud every token must carry (jwt mode)."`
	JWTCookie   string `name:"jwt-cookie" env:"GATEKEEPER_JWT_COOKIE" placeholder:"NAME" help:"Also take the token from this cookie when there is no Authorization header (jwt mode)."`

	// /authz's callers.
	AuthzTrusted    []string `name:"authz-trusted" env:"GATEKEEPER_AUTHZ_TRUSTED" default:"127.0.0.0/8,::1/128" help:"Peers (CIDRs) that may ask /authz; others get 403 authz_forbidden."`
	AuthzSecretFile string   `name:"authz-secret-file" env:"GATEKEEPER_AUTHZ_SECRET_FILE" placeholder:"FILE" help:"Also require this shared secret in X-Gatekeeper-Secret on every /authz request."`

	// Listener limits (proxy, /authz and admin listeners).
	ReadTimeout    time.Duration `name:"read-timeout" env:"GATEKEEPER_READ_TIMEOUT" default:"30s" help:"A request's headers and body must arrive within this (a slow body is cut)."`
	MaxHeaderBytes int           `name:"max-header-bytes" env:"GATEKEEPER_MAX_HEADER_BYTES" default:"65536" help:"Largest request header block."`
	MaxConns       int           `name:"max-conns" env:"GATEKEEPER_MAX_CONNS" default:"10000" help:"Open connections per listener; more wait to be accepted."`

	// Failure modes and denials.
	AllowNoKeys bool   `name:"allow-no-keys" env:"GATEKEEPER_ALLOW_NO_KEYS" help:"Start with no trusted vendor key (every licensed org is then denied license_invalid)."`
	RenewalURL  string `name:"renewal-url" env:"GATEKEEPER_RENEWAL_URL" default:"/ui/license/?org={org}" help:"The renewal link of the HTML denial page; {org} is replaced by the org."`

	// Which connection settings defaults() filled in (errors name them).
	urlDefaulted, nkeyDefaulted bool
}

// defaults fills in what depends on other settings.
func (c *gatekeeperCmd) defaults() {
	if c.NATSURL == "" {
		c.NATSURL, c.urlDefaulted = "nats://"+c.NATSListen, true
	}
	if c.NATSNKey == "" && c.NATSCreds == "" && c.NATSUser == "" {
		c.NATSNKey, c.nkeyDefaulted = c.ReaderSeedFile(c.DataDir), true
	}
}

// explainConnect says what to do about a failed connection to NATS, in
// terms of the settings the operator gave or left to their defaults.
func (c *gatekeeperCmd) explainConnect(err error) error {
	switch {
	case c.nkeyDefaulted && errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no reader credentials at %s, the default ($DATA_DIR/nats/reader.nk with --data-dir %s), which "+
			"a ledger serve on the embedded NATS writes: run the gatekeeper where that ledger runs, point --data-dir "+
			"(DATA_DIR) at the ledger's data directory, or give the reader's NATS_NKEY or NATS_CREDS (%w)", c.NATSNKey, c.DataDir, err)
	case c.urlDefaulted && natsstream.NoServers(err):
		return fmt.Errorf("nothing answers at %s, where a ledger serve on this machine runs its embedded NATS: start the "+
			"ledger first (ledger serve; --nats-listen says where), or set NATS_URL to the NATS servers of a scaled install (%w)", c.NATSURL, err)
	case natsstream.NoServers(err):
		return fmt.Errorf("no NATS server answers at NATS_URL %s: check that the servers run and the URL (and TLS settings) are right (%w)", c.NATSURL, err)
	}
	return err
}

// gateConfig validates the decision settings.
func (c *gatekeeperCmd) gateConfig() (gatekeeper.Config, error) {
	var cfg gatekeeper.Config
	var err error
	if cfg.OrgSource, err = gatekeeper.ParseOrgSource(c.OrgFrom); err != nil {
		return cfg, cli.Usage("--org-from: %v", err)
	}
	if cfg.TrustedProxies, err = gatekeeper.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return cfg, cli.Usage("--trusted-proxies: %v", err)
	}
	if cfg.Enforce, err = gatekeeper.ParseEnforce(c.Enforce); err != nil {
		return cfg, cli.Usage("LICENSE_ENFORCE: %v", err)
	}
	if c.Features != "" {
		f, err := os.Open(c.Features)
		if err != nil {
			return cfg, cli.Usage("--features: %v", err)
		}
		defer f.Close()
		if cfg.Features, err = gatekeeper.ParseFeatures(f); err != nil {
			return cfg, cli.Usage("--features %s: %v", c.Features, err)
		}
	}
	if c.SeatRoutes != "" {
		f, err := os.Open(c.SeatRoutes)
		if err != nil {
			return cfg, cli.Usage("--seat-routes: %v", err)
		}
		defer f.Close()
		if cfg.SeatRoutes, err = gatekeeper.ParseSeatRoutes(f); err != nil {
			return cfg, cli.Usage("--seat-routes %s: %v", c.SeatRoutes, err)
		}
	}
	cfg.AllowNoOrg, cfg.Allow, cfg.NoDefaultAllow, cfg.DecisionTimeout = c.AllowNoOrg, c.Allow, c.NoDefaultAllow, c.DecisionTimeout
	if c.AllowUI != "" {
		ui, err := gatekeeper.AllowUI(c.AllowUI)
		if err != nil {
			return cfg, cli.Usage("--allow-ui: %v", err)
		}
		cfg.Allow = append(cfg.Allow, ui)
	}
	return cfg, nil
}

func (c *gatekeeperCmd) Run(env *cli.Env) error {
	if err := c.Reachable(); err != nil {
		return err
	}
	c.defaults()
	log, err := c.Logger(env.Stderr)
	if err != nil {
		return err
	}
	cli.SetMemoryLimit(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.serve(ctx, log, nil)
}

// addrs are the bound listener addresses (tests).
type addrs struct{ proxy, authz, admin string }

// serve runs until ctx ends; started (tests) receives the bound addresses
// once the initial state is loaded.
func (c *gatekeeperCmd) serve(ctx context.Context, log *slog.Logger, started chan<- addrs) error {
	gcfg, err := c.gateConfig()
	if err != nil {
		return err
	}
	if err := gatekeeper.CheckRenewalURL(c.RenewalURL); err != nil {
		return cli.Usage("--renewal-url: %v", err)
	}
	gcfg.RenewalURL = c.RenewalURL
	lim, err := c.limits()
	if err != nil {
		return err
	}
	authzOpts, secret, err := c.authzOptions(log)
	if err != nil {
		return err
	}
	var upstream *url.URL
	if c.Listen != "off" && c.Upstream != "" {
		if upstream, err = url.Parse(c.Upstream); err != nil || upstream.Host == "" || (upstream.Scheme != "http" && upstream.Scheme != "https") {
			return cli.Usage("--upstream %q: want http(s)://host:port", c.Upstream)
		}
	}
	keys, err := c.KeyringFlags.Load()
	if err != nil {
		return cli.Usage("key ring: %v", err)
	}
	if err := c.checkKeys(keys.Ring(), log); err != nil {
		return err
	}
	tokens, err := c.tokenVerifier(ctx, gcfg.OrgSource, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Read(version).Collector("gatekeeper"))
	if tokens != nil {
		gcfg.Tokens, gcfg.TokenCookie = tokens, c.JWTCookie
		reg.MustRegister(tokens.Collector())
		sighup.Handle(ctx, func() {
			if err := tokens.Reload(ctx); err != nil {
				log.Error("--jwt-keys reload failed; keeping the current keys", "err", err)
			}
		})
	}
	f := c.NATSFlags
	nc, err := natsstream.Connect(natsstream.Dial{URL: f.NATSURL, NKeyFile: f.NATSNKey, CredsFile: f.NATSCreds,
		User: f.NATSUser, Password: f.NATSPassword, TLSCA: f.NATSTLSCA, TLSCert: f.NATSTLSCert, TLSKey: f.NATSTLSKey,
		Name: "gatekeeper", MaxStaleness: c.MaxStaleness, Logger: log})
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: c.explainConnect(err)}
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	stream, err := natsstream.Open(octx, nc, c.Stream)
	cancel()
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	var proxy *frontend.Proxy // set before the follower runs
	fol, err := follow.New(follow.Config{Stream: stream, DatabaseURL: c.DatabaseURL, Keys: keys, MinSeqWait: c.MinSeqWait,
		MaxStaleness: c.MaxStaleness, Logger: log.With("component", "state"), Registry: reg,
		OnChange: func(org string) {
			if proxy != nil {
				proxy.Recheck(org)
			}
		}})
	if err != nil {
		return cli.Usage("%v", err)
	}
	gate, err := gatekeeper.New(fol, gcfg)
	if err != nil {
		return cli.Usage("%v", err)
	}
	log.Info("allowlist: these routes pass whatever the license state", "entries", gate.Allowlist())
	if len(gcfg.SeatRoutes) > 0 {
		log.Info("seat routes: here an org at or over its users_limit is warned (seat mode soft) or refused (hard)", "routes", gcfg.SeatRoutes)
	}
	reg.MustRegister(gate.Collector()) // decisions by result and code; the enforcement override
	keys.ReloadOnSIGHUP(ctx, log, func(*license.Ring) { fol.Reverify() })
	if secret != nil {
		reloadSecretOnSIGHUP(ctx, log, secret)
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	if upstream != nil {
		proxy = frontend.NewProxy(gate, upstream, log)
		go proxy.RecheckEvery(runCtx, time.Second)
	}
	go fol.Run(runCtx)
	if tokens != nil {
		go tokens.Run(runCtx) // a URL JWKS: refreshed by its cache headers
	}

	srvs := &servers{log: log, shutdown: c.ShutdownWait, limits: lim}
	var serving atomic.Bool // /readyz waits for the listeners below too
	admin, err := srvs.listen(c.AdminListen, adminHandler(reg, fol, &serving))
	if err != nil {
		return err
	}
	if err := fol.Wait(ctx); err != nil {
		return nil // stopped before loading
	}
	var a addrs
	a.admin = admin
	if c.AuthzListen != "off" {
		if a.authz, err = srvs.listen(c.AuthzListen, frontend.Authz(gate, c.AuthzHeaders, authzOpts...)); err != nil {
			return err
		}
	}
	if upstream != nil {
		if a.proxy, err = srvs.listen(c.Listen, proxy); err != nil {
			return err
		}
	} else if c.Listen != "off" {
		log.Warn("no --upstream: the reverse proxy listener is off")
	}
	serving.Store(true)
	h := fol.Health()
	log.Info("gatekeeper ready", "orgs", h.OrgsCached, "applied_seq", h.AppliedSeq, "install_id", fol.InstallID(),
		"proxy", a.proxy, "authz", a.authz, "admin", a.admin, "org_from", c.OrgFrom, "keyring_fingerprint", keys.Ring().Fingerprint())
	if gcfg.Enforce != nil {
		log.Warn("LICENSE_ENFORCE overrides the install's enforcement mode", "enforce", *gcfg.Enforce)
	}
	if started != nil {
		started <- a
	}
	return srvs.wait(ctx)
}

// servers runs the HTTP listeners and shuts them down together.
type servers struct {
	log      *slog.Logger
	shutdown time.Duration
	limits   limits
	list     []*http.Server
	errc     chan error
}

func (s *servers) listen(addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	if s.errc == nil {
		s.errc = make(chan error, 4)
	}
	ln = netutil.LimitListener(ln, s.limits.maxConns)
	srv := s.limits.server(h)
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.list = append(s.list, srv)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
	return ln.Addr().String(), nil
}

func (s *servers) wait(ctx context.Context) error {
	var err error
	select {
	case err = <-s.errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
	defer cancel()
	for _, srv := range s.list {
		srv.Shutdown(sctx)
	}
	return err
}
