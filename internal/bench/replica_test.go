package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseReplicaLines(t *testing.T) {
	want := readyLine{Addr: "127.0.0.1:40123", Orgs: 100001, Applied: 100003}
	rest, ok := strings.CutPrefix(want.String(), lineReady+" ")
	if !ok {
		t.Fatalf("ready line %q", want.String())
	}
	if got, err := parseReady(rest); err != nil || got != want {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "127.0.0.1:1 2", "nohost 1 2", "127.0.0.1:1 x 2", "127.0.0.1:1 2 -3"} {
		if _, err := parseReady(bad); err == nil {
			t.Errorf("parseReady(%q) accepted", bad)
		}
	}
}

func TestParseLoadLog(t *testing.T) {
	log := `{"time":"2025-01-01T00:00:00Z","level":"INFO","msg":"install id adopted from the stream","install_id":"x"}
not json
{"time":"2025-01-01T00:00:01Z","level":"INFO","msg":"license state loaded","orgs":100001,"from":"postgres","stream_head":100003,"applied":100003,"took":1234000000}
`
	if l, ok := parseLoadLog(log); !ok || l.From != "postgres" || l.Took != 1234*time.Millisecond {
		t.Errorf("JSON: %+v, %v", l, ok)
	}
	if l, ok := parseLoadLog(`{"msg":"license state loaded","from":"stream","took":"850ms"}`); !ok || l.From != "stream" || l.Took != 850*time.Millisecond {
		t.Errorf("duration as text: %+v, %v", l, ok)
	}
	if _, ok := parseLoadLog("{\"msg\":\"other\"}\n"); ok {
		t.Error("no load line, found one")
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The bench replica on a real stream: it reports ready with the licensed
// org loaded, decides through /authz, and answers /readyz and /heap.
func TestRunReplica(t *testing.T) {
	ctx := context.Background()
	v, ne, svc, err := enforcingInstall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ne.close()
	if _, err := upload(ctx, svc, v, "acme"); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(t.TempDir(), "heap.pprof")
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- RunReplica(rctx, ReplicaConfig{NATSURL: ne.url, PublicKeys: v.env, HeapProfile: profile}, pw, logs)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunReplica: %v", err)
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("replica ended before %q: %s", prefix, logs.String())
				}
				if rest, found := strings.CutPrefix(l, prefix+" "); found {
					return rest
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %q line: %s", prefix, logs.String())
			}
		}
	}
	rl, err := parseReady(next(lineReady))
	if err != nil || rl.Orgs < 1 {
		t.Fatalf("ready: %+v, %v", rl, err)
	}
	if l, ok := parseLoadLog(logs.String()); !ok || l.From != "stream" {
		t.Errorf("load line: %+v, %v in %s", l, ok, logs.String())
	}
	base := "http://" + rl.Addr
	if err := decideRandom(ctx, base+"/authz", 1, 3); err == nil {
		t.Error("org-0 has no license, yet /authz allowed it")
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/authz", nil)
	req.Header = http.Header{"X-Org-Slug": {"acme"}, "X-Original-Method": {"GET"}, "X-Original-Uri": {"/"}}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/authz for acme: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	var h replicaHeap
	if err := getJSON(ctx, base+"/heap", &h); err != nil || h.HeapAlloc == 0 || h.Sys < h.HeapAlloc {
		t.Errorf("/heap: %+v, %v", h, err)
	}
	if fi, err := os.Stat(profile); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("heap profile: %v, %v", fi, err)
	}
	var health struct {
		Loaded bool `json:"loaded"`
	}
	if err := getJSON(ctx, base+"/readyz", &health); err != nil || !health.Loaded {
		t.Errorf("/readyz: %+v, %v", health, err)
	}
}
