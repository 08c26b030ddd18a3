package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/license"
)

const kid = "bench"

var operator = events.Actor{Kind: events.ActorOperator, ID: "bench"}

// vendor signs licenses with a key generated for the run.
type vendor struct {
	priv ed25519.PrivateKey
	keys *license.Keys
	env  string // the key as LICENSE_PUBLIC_KEYS, for the processes bench starts
}

func newVendor() (*vendor, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	env := kid + ":" + base64.StdEncoding.EncodeToString(pub)
	keys, err := license.NewKeys(license.RingConfig{Env: env, NoBuiltin: true})
	if err != nil {
		return nil, err
	}
	return &vendor{priv: priv, keys: keys, env: env}, nil
}

// sign issues a year-long license for org with two features.
func (v *vendor) sign(org string) (*license.License, error) {
	now := time.Now().UTC().Truncate(time.Second)
	p, err := json.Marshal(map[string]any{"license_id": uuid.Must(uuid.NewV7()).String(), "customer": "Customer " + org,
		"org_slug": org, "tier": "enterprise", "features": []string{"chat_connector", "sso"}, "users_limit": 50,
		"issued_at": now.Add(-24 * time.Hour).Format(time.RFC3339), "expires": now.Add(365 * 24 * time.Hour).Format(time.RFC3339)})
	if err != nil {
		return nil, err
	}
	return license.Sign(v.priv, kid, p)
}

// uploadedEnvelope is the license.uploaded event of lic for org, first on
// its subject.
func uploadedEnvelope(lic *license.License, org string, prevSeq uint64) (*events.Envelope, error) {
	return events.New(events.TypeUploaded, org, time.Now(), operator, prevSeq, events.Uploaded{LicenseID: lic.Payload.LicenseID,
		Fingerprint: lic.Fingerprint, Key: lic.Key, Slot: events.SlotCurrent, GraceDaysEffective: license.EffectiveGrace(lic.Payload, 7),
		Source: events.SourceAPI})
}

// natsEnv is an in-process nats-server with a JetStream file store,
// reached over loopback TCP like a separate process, and the stream.
type natsEnv struct {
	srv *server.Server
	dir string
	url string
	nc  *nats.Conn // the ledger's connection
	bus *natsbus.Bus
}

// startNATS starts a server; syncAlways fsyncs every write (the embedded
// default), else the store syncs on an interval.
func startNATS(ctx context.Context, syncAlways bool) (*natsEnv, error) {
	dir, err := os.MkdirTemp("", "ledger-bench-nats-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{ServerName: "bench", JetStream: true, StoreDir: dir, SyncAlways: syncAlways,
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, MaxPayload: 1 << 20, DisableShortFirstPing: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, errors.New("nats-server did not start")
	}
	e := &natsEnv{srv: srv, dir: dir, url: srv.ClientURL()}
	if e.nc, err = e.connect("ledger"); err != nil {
		e.close()
		return nil, err
	}
	if e.bus, _, err = natsbus.Open(ctx, e.nc, natsbus.DefaultStream, 1, true); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *natsEnv) connect(name string) (*nats.Conn, error) {
	return natsbus.Connect(natsbus.ConnConfig{URL: e.url, Name: name})
}

// readerBus opens the stream on a connection of its own, as a gatekeeper
// replica does.
func (e *natsEnv) readerBus(ctx context.Context, name string) (*natsbus.Bus, func(), error) {
	nc, err := e.connect(name)
	if err != nil {
		return nil, nil, err
	}
	b, _, err := natsbus.Open(ctx, nc, natsbus.DefaultStream, 1, false)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return b, nc.Close, nil
}

func (e *natsEnv) close() {
	if e.nc != nil {
		e.nc.Close()
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	os.RemoveAll(e.dir)
}

// newService is a started ledger command layer on e's stream.
func newService(ctx context.Context, e *natsEnv, v *vendor) (*ledger.Service, error) {
	svc := ledger.New(ledger.Config{Store: e.bus, Keys: v.keys, DefaultGraceDays: 7})
	if err := svc.Start(ctx, events.LedgerStarted{}); err != nil {
		return nil, fmt.Errorf("ledger start: %w", err)
	}
	return svc, nil
}

// upload uploads a fresh license for org through the command layer.
func upload(ctx context.Context, svc *ledger.Service, v *vendor, org string) (ledger.Result, error) {
	lic, err := v.sign(org)
	if err != nil {
		return ledger.Result{}, err
	}
	return svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(lic.Key), Actor: operator, Source: events.SourceAPI})
}

// enforcingInstall is a new vendor, a stream on a server of its own and a
// ledger on it whose install enforces: every decision reads the org's
// state and denies an org without a valid license. The caller closes the
// server.
func enforcingInstall(ctx context.Context) (*vendor, *natsEnv, *ledger.Service, error) {
	v, err := newVendor()
	if err != nil {
		return nil, nil, nil, err
	}
	ne, err := startNATS(ctx, false)
	if err != nil {
		return nil, nil, nil, err
	}
	svc, err := newService(ctx, ne, v)
	if err == nil {
		_, err = svc.SetEnforcement(ctx, operator, events.EnforceOn)
	}
	if err != nil {
		ne.close()
		return nil, nil, nil, err
	}
	return v, ne, svc, nil
}

// filledStream is a new vendor and a stream on a server of its own
// holding n events: an upload for each of orgs orgs, then invalidations
// (fillStream). The caller closes the server.
func (r *runner) filledStream(ctx context.Context, figure string, n, orgs int) (*vendor, *natsEnv, error) {
	v, err := newVendor()
	if err != nil {
		return nil, nil, err
	}
	ne, err := startNATS(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	r.progress("%s: appending %d events (%d orgs)", figure, n, orgs)
	if err := fillStream(ctx, ne, v, n, orgs); err != nil {
		ne.close()
		return nil, nil, err
	}
	return v, ne, nil
}
