package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/testenv/witnesstest"
)

// get fetches path with tok and returns the status and body.
func (p *ledgerProc) get(tok, path string) (int, []byte) {
	p.t.Helper()
	code, _, body := p.raw(tok, "GET", path, "")
	return code, []byte(body)
}

type proofJSON struct {
	Seq       uint64   `json:"seq"`
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	From      uint64   `json:"from"`
	To        uint64   `json:"to"`
	Hashes    [][]byte `json:"hashes"`
}

// The signed checkpoints and proofs, from outside: the checkpoint verifies
// with the served key, a record exported from the API is proven in it, an
// earlier checkpoint is proven a prefix of a later one, and a scoped
// auditor gets proofs of its org's records only. The key survives a
// restart and the checkpoints are kept.
func TestServeSignsCheckpointsAndProves(t *testing.T) {
	dir := t.TempDir()
	fast := func(c *serveCmd) { c.CheckpointInterval = 50 * time.Millisecond }
	l := startLedgerWith(t, dir, fast)
	checkpoint := func(l *ledgerProc, atLeast uint64) (uint64, audit.Hash, []byte, string) {
		t.Helper()
		code, vkey := l.get(l.token, "/api/audit/checkpoint/key")
		if code != 200 {
			t.Fatalf("checkpoint key: %d %s", code, vkey)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, note := l.get(l.token, "/api/audit/checkpoint")
			if code == 200 {
				size, root, err := audit.OpenCheckpoint(note, string(vkey))
				if err != nil {
					t.Fatalf("the checkpoint does not verify with the served key: %v\n%s", err, note)
				}
				if size >= atLeast {
					return size, root, note, strings.TrimSpace(string(vkey))
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of size %d: %d %s", atLeast, code, note)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	upload := func(org string) float64 {
		t.Helper()
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"] = org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", len(org)*1000+int(time.Now().UnixNano()%1000))
			p["expires"] = time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339)
		})
		code, up := l.call("POST", "/api/license?org="+org, key)
		if code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, up)
		}
		return up["seq"].(float64)
	}
	upload("acme")
	first, firstRoot, _, vkey := checkpoint(l, 2)
	if !strings.HasPrefix(vkey, audit.OriginPrefix) {
		t.Fatalf("verifier key %q does not name the install", vkey)
	}
	globex := uint64(upload("globex"))
	upload("initech")
	size, root, note, _ := checkpoint(l, globex+1)
	if !strings.HasPrefix(string(note), audit.OriginPrefix) || !strings.Contains(string(note), fmt.Sprintf("\n%d\n", size)) {
		t.Fatalf("not a C2SP checkpoint:\n%s", note)
	}

	if got := metric(t, l, "ledger_audit_checkpoint_tree_size"); got < float64(size) {
		t.Fatalf("ledger_audit_checkpoint_tree_size %v, checkpoint %d", got, size)
	}
	// The record as the API exports it, proven in the latest checkpoint.
	var raw []byte
	for _, r := range auditRecords(t, l, "") {
		if uint64(r["seq"].(float64)) == globex {
			raw = []byte(r["envelope"].(string))
		}
	}
	code, body := l.get(l.token, fmt.Sprintf("/api/audit/proof/inclusion?seq=%d", globex))
	var incl proofJSON
	if code != 200 || json.Unmarshal(body, &incl) != nil || incl.TreeSize != size || incl.LeafIndex != globex-1 {
		t.Fatalf("inclusion proof: %d %s", code, body)
	}
	if err := audit.VerifyInclusion(raw, globex, size, incl.Hashes, root); err != nil {
		t.Fatalf("the inclusion proof does not verify: %v", err)
	}
	if err := audit.VerifyInclusion(append(raw, ' '), globex, size, incl.Hashes, root); err == nil {
		t.Fatal("a changed record verified")
	}
	code, body = l.get(l.token, fmt.Sprintf("/api/audit/proof/consistency?from=%d", first))
	var cons proofJSON
	if code != 200 || json.Unmarshal(body, &cons) != nil || cons.From != first || cons.To != size {
		t.Fatalf("consistency proof: %d %s", code, body)
	}
	if err := audit.VerifyConsistency(first, size, cons.Hashes, firstRoot, root); err != nil {
		t.Fatalf("the consistency proof does not verify: %v", err)
	}

	// Clear refusals.
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/api/audit/proof/inclusion", 400, "seq must be"},
		{"/api/audit/proof/inclusion?seq=abc", 400, "seq must be"},
		{fmt.Sprintf("/api/audit/proof/inclusion?seq=%d", size+5), 400, "not in the tree"},
		{"/api/audit/proof/inclusion?seq=1&size=999999", 400, "no checkpoint of that size"},
		{"/api/audit/proof/consistency", 400, "from must be"},
		{fmt.Sprintf("/api/audit/proof/consistency?from=%d&to=%d", size, first), 400, "beyond"},
		{"/api/audit/proof/consistency?from=-1", 400, "from must be"},
	} {
		if code, body := l.get(l.token, c.path); code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want %d %q", c.path, code, body, c.code, c.want)
		}
	}

	// An auditor of acme: proofs of acme's records, 403 for globex's.
	acme := createTokenOn(t, l.url, filepath.Join(dir, "tokens"), "--role", "auditor", "--org", "acme", "--name", "acme-audit")
	if code, body := l.get(acme, fmt.Sprintf("/api/audit/proof/inclusion?seq=%d", globex)); code != 403 {
		t.Fatalf("acme's auditor, globex's record: %d %s", code, body)
	}
	if code, body := l.get(acme, "/api/audit/proof/inclusion?seq=2"); code != 200 {
		t.Fatalf("acme's auditor, acme's record: %d %s", code, body)
	}
	// The CLI: the checkpoint and the key as the API serves them, a proof
	// bundle, and its offline check (no server, no database).
	if code, out, _ := l.client(t, "", "audit", "checkpoint", "--size", fmt.Sprint(size)); code != 0 || out != string(note) {
		t.Fatalf("audit checkpoint --size %d: %d %q", size, code, out)
	}
	if code, out, _ := cliRun(t, "", "audit", "checkpoint-key", "--data-dir", dir); code != 0 || out != vkey+"\n" {
		t.Fatalf("audit checkpoint-key from the key file: %d %q, want %q", code, out, vkey)
	}
	code, bundle, errOut := l.client(t, "", "audit", "prove", "--seq", fmt.Sprint(globex))
	if code != 0 {
		t.Fatalf("audit prove: %d %s", code, errOut)
	}
	offline := func(stdin string, args ...string) (int, string) {
		t.Helper()
		code, out, errOut := cliRun(t, stdin, append([]string{"audit", "verify-proof"}, args...)...)
		return code, out + errOut
	}
	if code, out := offline(bundle, "-", "--key", vkey); code != 0 || !strings.HasPrefix(out, fmt.Sprintf("ok seq=%d tree_size=%d root=%x origin=%s", globex, size, root, strings.SplitN(vkey, "+", 2)[0])) {
		t.Fatalf("verify-proof of the bundle: %d %q", code, out)
	}
	var b audit.Bundle
	if err := json.Unmarshal([]byte(bundle), &b); err != nil {
		t.Fatal(err)
	}
	forged := b
	env := strings.Replace(*b.Record.Envelope, `"globex"`, `"globez"`, 1)
	forged.Record.Envelope = &env
	forgedJSON, _ := json.Marshal(forged)
	if code, out := offline(string(forgedJSON), "-", "--key", vkey); code != 1 || !strings.HasPrefix(out, "not proven: ") {
		t.Fatalf("verify-proof of a changed record: %d %q", code, out)
	}
	otherKey := filepath.Join(t.TempDir(), "other.key")
	other, _, _ := audit.LoadCheckpointKey(otherKey, strings.SplitN(vkey, "+", 2)[0])
	if code, out := offline(bundle, "-", "--key", other.VerifierKey()); code != 1 || !strings.Contains(out, "not proven: ") {
		t.Fatalf("verify-proof with another key of the same name: %d %q", code, out)
	}
	if code, out := offline(bundle, "-"); code != 2 || !strings.Contains(out, "verifier key is needed") {
		t.Fatalf("verify-proof without a key: %d %q", code, out)
	}
	// The three parts in files of their own, as an export and the API give them.
	parts := t.TempDir()
	rec, _ := json.Marshal(b.Record)
	prf, _ := json.Marshal(b.Proof)
	for name, data := range map[string][]byte{"record.json": rec, "proof.json": prf, "checkpoint": []byte(b.Checkpoint), "vkey": []byte(vkey + "\n")} {
		if err := os.WriteFile(filepath.Join(parts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := offline("", "--record", filepath.Join(parts, "record.json"), "--proof", filepath.Join(parts, "proof.json"),
		"--checkpoint", filepath.Join(parts, "checkpoint"), "--key-file", filepath.Join(parts, "vkey")); code != 0 || !strings.HasPrefix(out, "ok ") {
		t.Fatalf("verify-proof of the parts: %d %q", code, out)
	}
	if code, _, errOut := l.client(t, "", "audit", "prove", "--seq", fmt.Sprint(size+3)); code != 3 || !strings.Contains(errOut, "not in the tree") {
		t.Fatalf("audit prove beyond the tree: %d %q", code, errOut)
	}
	if code, _, _ := cliRun(t, "", "audit", "prove", "--seq", fmt.Sprint(globex), "--server", l.url, "--token", acme); code != 3 {
		t.Fatalf("audit prove of globex's record by acme's auditor: %d", code)
	}
	l.stop()

	// Restarted: the same key, every checkpoint kept.
	l2 := startLedgerWith(t, dir, fast)
	_, _, _, vkey2 := checkpoint(l2, size)
	if vkey2 != vkey {
		t.Fatalf("the checkpoint key changed on restart: %q, was %q", vkey2, vkey)
	}
	if code, body := l2.get(l2.token, fmt.Sprintf("/api/audit/proof/consistency?from=%d&to=%d", first, size)); code != 200 {
		t.Fatalf("consistency between checkpoints signed before the restart: %d %s", code, body)
	}
}

// Checkpoints go to a witness, which cosigns them; they are archived
// cosigned; a witness that holds a larger tree of this install (the trail
// rewound since) is a fork: /readyz shows it and the metric counts it,
// without making the ledger unready.
func TestServeSendsCheckpointsToWitnesses(t *testing.T) {
	dir := t.TempDir()
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.CheckpointInterval = time.Hour })
	_, vkey := l.get(l.token, "/api/audit/checkpoint/key")
	l.stop()

	tw := witnesstest.New(t, strings.TrimSpace(string(vkey)))
	srv := httptest.NewServer(tw)
	defer srv.Close()
	archive := filepath.Join(t.TempDir(), "archive")
	l = startLedgerWith(t, dir, func(c *serveCmd) {
		c.CheckpointInterval = 50 * time.Millisecond
		c.Witnesses = []string{tw.VKey + " " + srv.URL}
		c.CheckpointArchive = archive
	})
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339) })
	code, up := l.call("POST", "/api/license?org=acme", key)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, up)
	}
	waitUntil(t, "the witness cosigns the upload's checkpoint", func() bool { return tw.Size() >= uint64(up["seq"].(float64)) })
	sample := fmt.Sprintf(`ledger_audit_witness_requests_total{outcome="cosigned",witness=%q}`, srv.URL)
	if metric(t, l, sample) < 1 {
		t.Fatalf("%s: %v", sample, metric(t, l, sample))
	}
	files, _ := filepath.Glob(filepath.Join(archive, "*.checkpoint"))
	if len(files) == 0 {
		t.Fatal("nothing archived")
	}
	last, _ := os.ReadFile(files[len(files)-1])
	if strings.Count(string(last), "\n— ") != 2 {
		t.Fatalf("the archived checkpoint is not cosigned:\n%s", last)
	}
	_, rd := readyz(t, l)
	ws, _ := rd["audit_witnesses"].([]any)
	if len(ws) != 1 || ws[0].(map[string]any)["fork"] != nil {
		t.Fatalf("/readyz audit_witnesses: %v", rd["audit_witnesses"])
	}

	// The witness saw a larger tree of this install than it has now.
	tw.Hold(1_000_000, make([]byte, 32))
	if code, m := l.call("POST", "/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","note":"refund"}`); code != 200 {
		t.Fatalf("invalidate: %d %v", code, m)
	}
	fork := fmt.Sprintf(`ledger_audit_witness_fork{witness=%q}`, srv.URL)
	waitUntil(t, "the fork reported", func() bool { return metric(t, l, fork) == 1 })
	code, rd = readyz(t, l)
	ws, _ = rd["audit_witnesses"].([]any)
	if code != 200 || len(ws) != 1 || !strings.Contains(fmt.Sprint(ws[0].(map[string]any)["fork"]), "rewound") {
		t.Fatalf("/readyz after a fork: %d %v", code, rd)
	}
	if !strings.Contains(l.logText(), "AUDIT WITNESS REFUSED THE CHECKPOINT") {
		t.Fatalf("no alert in the log:\n%s", l.logText())
	}
}
