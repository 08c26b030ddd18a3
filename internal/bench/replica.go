package bench

// The bench replica is what cmd/gatekeeper runs, in a process of its own
// for the figures that measure a replica from outside: a follower of the
// stream (and of the PostgreSQL read model when given), a gate, /authz and
// /readyz on one loopback listener. It is built from the public packages
// only (gatekeeper, gatekeeper/follow, gatekeeper/natsstream, license), as
// a program in another module would be: the figure measures what users run.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/gatekeeper/frontend"
	"github.com/licenseledger/ledger/gatekeeper/natsstream"
	"github.com/licenseledger/ledger/license"
)

// ReplicaConfig configures a bench replica (ledger bench-replica).
type ReplicaConfig struct {
	NATSURL  string
	NKeyFile string // the reader's seed ("" on the bench's own server)
	Stream   string // "" = natsstream.DefaultStream
	// PublicKeys is a LICENSE_PUBLIC_KEYS value: the only keys trusted.
	PublicKeys  string
	DatabaseURL string
	// HeapProfile, if set, receives a heap profile at each GET /heap,
	// after its collection.
	HeapProfile string
}

// lineReady is the replica's stdout line once it serves:
// "ready ADDR ORGS APPLIED_SEQ".
const lineReady = "ready"

// readyLine is what a replica reports once it serves.
type readyLine struct {
	Addr    string
	Orgs    int
	Applied uint64
}

func (l readyLine) String() string {
	return fmt.Sprintf("%s %s %d %d", lineReady, l.Addr, l.Orgs, l.Applied)
}

// parseReady parses the fields after "ready ".
func parseReady(s string) (readyLine, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return readyLine{}, fmt.Errorf("ready line %q: want ADDR ORGS APPLIED_SEQ", s)
	}
	orgs, err1 := strconv.Atoi(f[1])
	applied, err2 := strconv.ParseUint(f[2], 10, 64)
	if _, _, err := net.SplitHostPort(f[0]); err != nil || err1 != nil || err2 != nil {
		return readyLine{}, fmt.Errorf("ready line %q: %w", s, errors.Join(err, err1, err2))
	}
	return readyLine{Addr: f[0], Orgs: orgs, Applied: applied}, nil
}

// loadLog is the follower's own account of its initial load, from its
// "license state loaded" log line (JSON).
type loadLog struct {
	From string // stream, postgres, postgres+stream
	Took time.Duration
}

// parseLoadLog finds the follower's load line in a replica's JSON log.
func parseLoadLog(log string) (loadLog, bool) {
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			From string `json:"from"`
			Took any    `json:"took"` // slog's JSON: nanoseconds; text: "1.2s"
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "license state loaded" {
			continue
		}
		l := loadLog{From: rec.From}
		switch t := rec.Took.(type) {
		case float64:
			l.Took = time.Duration(t)
		case string:
			l.Took, _ = time.ParseDuration(t)
		}
		return l, true
	}
	return loadLog{}, false
}

// replicaHeap is a replica's own heap account (GET /heap), read after a
// full collection that returned every free page to the system.
type replicaHeap struct {
	HeapAlloc uint64 `json:"heap_alloc"`
	HeapSys   uint64 `json:"heap_sys"`
	Sys       uint64 `json:"sys"`
}

// RunReplica runs a bench replica until ctx ends. Its log (JSON, info)
// goes to logw; stdout receives the ready line once the initial load is
// done and the listener serves.
func RunReplica(ctx context.Context, cfg ReplicaConfig, stdout, logw io.Writer) error {
	log := slog.New(slog.NewJSONHandler(logw, nil))
	keys, err := license.NewKeys(license.RingConfig{Env: cfg.PublicKeys, NoBuiltin: true})
	if err != nil {
		return err
	}
	nc, err := natsstream.Connect(natsstream.Dial{URL: cfg.NATSURL, NKeyFile: cfg.NKeyFile, Name: "bench-replica", Logger: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	stream, err := natsstream.Open(octx, nc, cfg.Stream)
	cancel()
	if err != nil {
		return err
	}
	// The registry cmd/gatekeeper keeps: the follower's and the gate's
	// metrics beside the Go and process collectors.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fol, err := follow.New(follow.Config{Stream: stream, DatabaseURL: cfg.DatabaseURL, Keys: keys, Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	gate, err := gatekeeper.New(fol, gatekeeper.Config{})
	if err != nil {
		return err
	}
	reg.MustRegister(gate.Collector())
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { fol.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: replicaMux(fol, gate, reg, cfg.HeapProfile), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	if err := fol.Wait(ctx); err != nil {
		return nil // stopped before loading
	}
	h := fol.Health()
	if _, err := fmt.Fprintln(stdout, readyLine{Addr: ln.Addr().String(), Orgs: h.OrgsCached, Applied: h.AppliedSeq}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func replicaMux(fol *follow.Follower, gate *gatekeeper.Gate, reg *prometheus.Registry, heapProfile string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/authz", frontend.Authz(gate, "original"))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := fol.Health()
		if !h.Loaded {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("GET /heap", func(w http.ResponseWriter, _ *http.Request) {
		debug.FreeOSMemory() // a collection, and every free page returned
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if heapProfile != "" {
			if err := writeHeapProfile(heapProfile); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		json.NewEncoder(w).Encode(replicaHeap{HeapAlloc: ms.HeapAlloc, HeapSys: ms.HeapSys, Sys: ms.Sys})
	})
	return mux
}

// writeHeapProfile writes the heap profile as of the last collection to
// path, mode 0600.
func writeHeapProfile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
