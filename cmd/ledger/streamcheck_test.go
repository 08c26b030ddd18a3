package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/natsroletest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// natsCLIBin builds the nats CLI (go.mod's tool line).
func natsCLIBin(t *testing.T) string {
	t.Helper()
	return proctest.Build(t, t.TempDir(), proctest.NATSCLI)["nats"]
}

// metric reads one sample of the ledger's /metrics: name with its labels
// as written there, e.g. `x{field="max_age"}`; -1 when absent.
func metric(t *testing.T, l *ledgerProc, sample string) float64 {
	t.Helper()
	resp, err := http.Get(l.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, l *ledgerProc) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(l.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// waitUntil polls cond every 20 ms until it holds; the bound is far above
// what it takes (a few checks of 20 ms), so only a hang fails.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// driftRecords are the ledger.stream_config_drift events the audit API
// lists, oldest first.
func driftRecords(t *testing.T, l *ledgerProc) []events.StreamConfigDrift {
	t.Helper()
	var out []events.StreamConfigDrift
	for _, r := range auditRecords(t, l, "type="+events.TypeStreamConfigDrift) {
		var env struct {
			Org  string                   `json:"org"`
			Data events.StreamConfigDrift `json:"data"`
		}
		if err := json.Unmarshal([]byte(r["envelope"].(string)), &env); err != nil {
			t.Fatal(err)
		}
		if env.Org != "_instance" || r["subject"] != "licenses.audit._instance" {
			t.Fatalf("drift event on %v for %s", r["subject"], env.Org)
		}
		out = append(out, env.Data)
	}
	return out
}

// An operator (or anyone holding admin.nk) sets a maximum age on the
// running ledger's stream with the nats CLI: the ledger notices within a
// check, logs each field, exports it, goes unready saying why, and
// records it on the audit trail once, however many checks follow;
// ledger stream apply puts it right, and that is recorded too.
func TestServeStreamDrift(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen, c.StreamCheck, c.LogLevel = listen, 20*time.Millisecond, "info" })
	if code, rd := readyz(t, l); code != 200 || rd["stream"] != "ok" {
		t.Fatalf("readyz before: %d %v", code, rd)
	}
	if v := metric(t, l, "ledger_stream_config_drift"); v != 0 {
		t.Fatalf("ledger_stream_config_drift %v before any change", v)
	}
	out, err := proctest.RunNATSCLI(t, natsCLIBin(t), "--server", "nats://"+listen, "--nkey", filepath.Join(dir, "nats", "admin.nk"),
		"--inbox-prefix", "_INBOX.admin", "stream", "edit", "LICENSES", "--max-age", "10y", "-f")
	if err != nil {
		t.Fatalf("nats stream edit as the admin: %v\n%s", err, out)
	}
	waitUntil(t, "ledger_stream_config_drift 1", func() bool { return metric(t, l, "ledger_stream_config_drift") == 1 })
	if v := metric(t, l, `ledger_stream_config_drift_fields{field="max_age"}`); v != 1 {
		t.Errorf(`ledger_stream_config_drift_fields{field="max_age"} = %v`, v)
	}
	code, rd := readyz(t, l)
	stream, _ := rd["stream"].(string)
	if code != 503 || !strings.Contains(stream, "max_age (expected 0s, actual 87600h0m0s)") || !strings.Contains(stream, "ledger stream apply") {
		t.Errorf("readyz while the stream drifts: %d %v", code, rd)
	}
	if line := `msg="stream configuration differs from the contract" stream=LICENSES field=max_age expected=0s actual=87600h0m0s`; !strings.Contains(l.logText(), line) {
		t.Errorf("no log line %s:\n%s", line, l.logText())
	}
	// Many checks later, one event.
	checks := metric(t, l, "ledger_stream_config_checks_total")
	waitUntil(t, "five more checks", func() bool { return metric(t, l, "ledger_stream_config_checks_total") >= checks+5 })
	waitUntil(t, "the drift event in the audit trail", func() bool { return len(driftRecords(t, l)) > 0 })
	want := []events.ConfigField{{Field: "max_age", Expected: "0s", Actual: "87600h0m0s"}}
	if got := driftRecords(t, l); len(got) != 1 || got[0].Stream != "LICENSES" || fmt.Sprint(got[0].Fields) != fmt.Sprint(want) {
		t.Fatalf("drift events %+v, want one with %v", got, want)
	}
	if n := strings.Count(l.logText(), "stream configuration differs from the contract"); n != 1 {
		t.Errorf("the drift was logged %d times, want once", n)
	}

	// ledger stream check sees it too; ledger stream apply restores it.
	code, out, errOut := cliRun(t, "", "stream", "check", "--data-dir", dir, "--nats-listen", listen)
	if code != 1 || !strings.Contains(out, "max_age: expected 0s, actual 87600h0m0s") {
		t.Errorf("stream check: %d %q %q", code, out, errOut)
	}
	code, out, errOut = cliRun(t, "", "stream", "apply", "--data-dir", dir, "--nats-listen", listen)
	if code != 0 || !strings.Contains(out, "max_age: 87600h0m0s -> 0s") {
		t.Fatalf("stream apply: %d %q %q", code, out, errOut)
	}
	waitUntil(t, "ledger_stream_config_drift 0", func() bool { return metric(t, l, "ledger_stream_config_drift") == 0 })
	waitUntil(t, "the end of the drift in the audit trail", func() bool { return len(driftRecords(t, l)) == 2 })
	if got := driftRecords(t, l); got[1].Fields == nil || len(got[1].Fields) != 0 {
		t.Errorf("the second drift event %+v, want no fields", got[1])
	}
	if code, rd := readyz(t, l); code != 200 || rd["stream"] != "ok" {
		t.Errorf("readyz after stream apply: %d %v", code, rd)
	}
	if !strings.Contains(l.logText(), `msg="stream configuration matches the contract again" stream=LICENSES`) {
		t.Errorf("the end of the drift was not logged:\n%s", l.logText())
	}
	if code, out, _ := cliRun(t, "", "stream", "check", "--data-dir", dir, "--nats-listen", listen); code != 0 ||
		!strings.Contains(out, "has the contract's configuration") {
		t.Errorf("stream check after apply: %d %q", code, out)
	}
}

// The running ledger's embedded server, seen from outside: ledger.nk
// cannot edit the stream (history intact), reader.nk subscribes only to
// its own inbox and leaves no consumer behind, admin.nk can edit.
func TestServeEmbeddedIdentities(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	// Every start appends a ledger.started: two starts, two messages on
	// licenses.audit._instance, which a per-subject limit of one would cut.
	startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = listen }).stop()
	startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = listen })
	seeds := filepath.Join(dir, "nats")
	natsroletest.Check(t, natsroletest.Target{URL: "nats://" + listen, LedgerSeed: filepath.Join(seeds, "ledger.nk"),
		ReaderSeed: filepath.Join(seeds, "reader.nk"), AdminSeed: filepath.Join(seeds, "admin.nk"), NATSCLI: natsCLIBin(t),
		Subject: "licenses.audit._instance", Replicas: 1})
}

// A data directory written by the release before the stream administrator
// existed — ledger.nk and reader.nk, a stream without consumer bounds —
// starts under this one: admin.nk is created (0600), the stream gains the
// bounds, nothing is lost, the gatekeepers' reader.nk keeps working, and
// the ledger is ready with no drift to report.
func TestServeUpgradesAPreviousReleasesDataDir(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = listen })
	code, up := l.call("POST", "/api/license?org=acme", signed(t, "k1", func(m map[string]any) { m["expires"] = future(time.Hour) }))
	if code != 200 || up["status"] != "valid" {
		t.Fatalf("upload: %d %v", code, up)
	}
	l.stop()
	// The previous release's layout.
	seeds := filepath.Join(dir, "nats")
	if err := os.Remove(filepath.Join(seeds, "admin.nk")); err != nil {
		t.Fatal(err)
	}
	readerSeed, _ := os.ReadFile(filepath.Join(seeds, "reader.nk"))
	offline(t, dir, func(ctx context.Context, js jetstream.JetStream) {
		old := natsbus.StreamConfig("LICENSES", 1)
		old.MaxConsumers, old.ConsumerLimits = -1, jetstream.StreamConsumerLimits{}
		if _, err := js.UpdateStream(ctx, old); err != nil {
			t.Fatal(err)
		}
	})
	before := streamContents(t, dir)

	l = startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen, c.LogLevel = listen, "info" })
	fi, err := os.Stat(filepath.Join(seeds, "admin.nk"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.nk after the upgrade: %v %v", fi, err)
	}
	for _, field := range []string{"max_consumers", "consumer_limits.inactive_threshold"} {
		if line := `msg="stream configuration upgraded" stream=LICENSES field=` + field; !strings.Contains(l.logText(), line) {
			t.Errorf("no log line %s:\n%s", line, l.logText())
		}
	}
	if code, rd := readyz(t, l); code != 200 || rd["stream"] != "ok" {
		t.Fatalf("readyz after the upgrade: %d %v", code, rd)
	}
	if _, st := l.call("GET", "/api/license?org=acme", ""); st["status"] != "valid" || st["seq"] != up["seq"] {
		t.Fatalf("acme after the upgrade: %v (uploaded at seq %v)", st, up["seq"])
	}
	if got := driftRecords(t, l); len(got) != 0 {
		t.Errorf("an upgrade recorded as drift: %+v", got)
	}
	// The gatekeepers' credentials, unchanged, read every event.
	if after, _ := os.ReadFile(filepath.Join(seeds, "reader.nk")); string(after) != string(readerSeed) {
		t.Fatal("the upgrade replaced reader.nk")
	}
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: "nats://" + listen, NKeyFile: filepath.Join(seeds, "reader.nk"), Role: natsauth.RoleReader})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bus, _, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range before {
		got, err := bus.Get(context.Background(), m.Seq)
		if err != nil || got == nil || got.Subject != m.Subject || string(got.Raw) != string(m.Data) {
			t.Fatalf("seq %d after the upgrade: %+v %v", m.Seq, got, err)
		}
	}
}
