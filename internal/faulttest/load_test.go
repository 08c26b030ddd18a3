package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
	"github.com/licenseledger/ledger/license"
)

// uploadTimeout is the clients' patience, the CLI's default --timeout: a
// ledger waiting out a NATS restart still answers within it.
const uploadTimeout = 30 * time.Second

// ack is an upload the ledger acknowledged with 200.
type ack struct {
	org, licenseID string
	seq            uint64
	via            string // "http" or "cli"
}

// load uploads new licenses through a ledger from concurrent clients, over
// HTTP and with the `ledger upload` CLI, and records every answer.
type load struct {
	t      *testing.T
	ledger *ledgerProc
	orgs   []string
	client *http.Client
	stop   atomic.Bool
	wg     sync.WaitGroup
	seq    atomic.Int64 // users_limit of the next license: every key differs

	mu       sync.Mutex
	acks     []ack
	statuses map[string]int // "http 200", "cli exit 4 (503)"…
	bad      []string       // anything but 200, 409 and 503
}

// startLoad runs workers HTTP clients and one CLI client uploading to
// orgs (shared, so uploads to one org race) until stopLoad.
func startLoad(t *testing.T, l *ledgerProc, orgs []string, workers int) *load {
	t.Helper()
	ld := &load{t: t, ledger: l, orgs: orgs, statuses: map[string]int{},
		client: &http.Client{Timeout: uploadTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}}
	for range workers {
		ld.wg.Go(ld.httpWorker)
	}
	ld.wg.Go(ld.cliWorker)
	t.Cleanup(ld.stopLoad)
	return ld
}

// stopLoad stops the clients and waits for their last answers.
func (ld *load) stopLoad() {
	ld.stop.Store(true)
	ld.wg.Wait()
}

// waitAcks waits until n more uploads were acknowledged than at the call,
// failing on timeout.
func (ld *load) waitAcks(n int, timeout time.Duration, procs ...*proctest.Process) {
	ld.t.Helper()
	target := ld.acked() + n
	proctest.WaitFor(ld.t, fmt.Sprintf("%d acknowledged uploads", target), timeout, procs, func() error {
		if got := ld.acked(); got < target {
			return fmt.Errorf("%d acknowledged", got)
		}
		return nil
	})
}

func (ld *load) acked() int {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return len(ld.acks)
}

// results returns the acknowledged uploads and the answer counts, failing
// the test if a client saw anything but 200, 409 and 503.
func (ld *load) results() ([]ack, map[string]int) {
	ld.t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.bad) > 0 {
		ld.t.Errorf("%d answers other than 200/409/503, first ones:\n%s", len(ld.bad), strings.Join(ld.bad[:min(len(ld.bad), 10)], "\n"))
	}
	return append([]ack(nil), ld.acks...), ld.statuses
}

func (ld *load) record(status string, a *ack, bad string) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	ld.statuses[status]++
	if a != nil {
		ld.acks = append(ld.acks, *a)
	}
	if bad != "" {
		ld.bad = append(ld.bad, bad)
	}
}

// newKey signs a license for org, issued now, unique by id and
// users_limit. Concurrent uploads to one org make the older one a 409.
func (ld *load) newKey(org string) (key, id string, err error) {
	id = uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC()
	payload, err := json.Marshal(map[string]any{
		"license_id": id, "customer": "Customer " + org, "org_slug": org, "tier": "enterprise",
		"features": []string{"sso"}, "issued_at": now.Format("2006-01-02T15:04:05.000000Z"),
		"expires": now.Add(90 * 24 * time.Hour).Format(time.RFC3339), "users_limit": ld.seq.Add(1),
	})
	if err != nil {
		return "", "", err
	}
	_, priv := licensetest.Key("k1")
	l, err := license.Sign(priv, "k1", payload)
	if err != nil {
		return "", "", err
	}
	return l.Key, id, nil
}

func (ld *load) httpWorker() {
	for !ld.stop.Load() {
		org := ld.orgs[rand.IntN(len(ld.orgs))]
		key, id, err := ld.newKey(org)
		if err != nil {
			ld.record("sign error", nil, err.Error())
			return
		}
		ld.httpUpload(org, key, id)
	}
}

func (ld *load) httpUpload(org, key, id string) {
	req, err := http.NewRequest("POST", ld.ledger.api+"/api/license?org="+org, strings.NewReader(key))
	if err != nil {
		ld.record("request error", nil, err.Error())
		return
	}
	req.Header.Set("Authorization", "Bearer "+ld.ledger.token)
	resp, err := ld.client.Do(req)
	if err != nil {
		ld.record("http transport error", nil, fmt.Sprintf("upload %s to %s: %v", id, org, err))
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	status := fmt.Sprintf("http %d", resp.StatusCode)
	switch resp.StatusCode {
	case 200:
		a, err := ackOf(body, org, id, "http")
		if err != nil {
			ld.record(status, nil, err.Error())
			return
		}
		ld.record(status, a, "")
	case 409, 503:
		ld.record(status, nil, "")
	default:
		ld.record(status, nil, fmt.Sprintf("upload %s to %s: %d %s", id, org, resp.StatusCode, body))
	}
}

// ackOf reads the status payload of a 200: the org's current license must
// be the one uploaded, and seq its event.
func ackOf(body []byte, org, id, via string) (*ack, error) {
	var st struct {
		Org       string  `json:"org"`
		LicenseID string  `json:"license_id"`
		Seq       *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &st); err != nil || st.Seq == nil {
		return nil, fmt.Errorf("upload %s to %s: 200 with %q (%v)", id, org, body, err)
	}
	if st.Org != org || st.LicenseID != id {
		return nil, fmt.Errorf("upload %s to %s: 200 naming license %s of %s", id, org, st.LicenseID, st.Org)
	}
	return &ack{org: org, licenseID: id, seq: *st.Seq, via: via}, nil
}

// cliWorker uploads with `ledger upload`, one process per upload, and
// reads its exit status: 0 (200), 3 with a 409 code, 4 with a 503 code.
func (ld *load) cliWorker() {
	for !ld.stop.Load() {
		org := ld.orgs[rand.IntN(len(ld.orgs))]
		key, id, err := ld.newKey(org)
		if err != nil {
			ld.record("sign error", nil, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), uploadTimeout+10*time.Second)
		cmd := exec.CommandContext(ctx, ld.ledger.bin, "upload", "--org", org, "-")
		cmd.Env = proctest.ChildEnv(map[string]string{"LEDGER_SERVER": ld.ledger.api, "LEDGER_TOKEN": ld.ledger.token})
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(key), &stdout, &stderr
		err = cmd.Run()
		cancel()
		code := cmd.ProcessState.ExitCode()
		errText := strings.TrimSpace(stderr.String())
		switch {
		case err == nil:
			a, err := ackOf(stdout.Bytes(), org, id, "cli")
			if err != nil {
				ld.record("cli exit 0", nil, err.Error())
				continue
			}
			ld.record("cli exit 0 (200)", a, "")
		case code == 3 && (strings.HasPrefix(errText, "license_older_than_current:") || strings.HasPrefix(errText, "conflict:")):
			ld.record("cli exit 3 (409)", nil, "")
		case code == 4 && strings.Contains(errText, "event_store_unavailable"):
			ld.record("cli exit 4 (503)", nil, "")
		default:
			ld.record(fmt.Sprintf("cli exit %d", code), nil, fmt.Sprintf("ledger upload %s to %s: %v: %s", id, org, err, errText))
		}
	}
}

// orgNames are n org slugs.
func orgNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}
