package readmetest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// The documents whose marked blocks run, in order, in one session: the
// README's Quickstart, then the audit trail's export and its verification
// with jq, xxd and sha256sum, on the Quickstart's upload.
const (
	readmeDoc = "README.md"
	auditDoc  = "docs/audit.md"
)

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(proctest.RepoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestQuickstart(t *testing.T) {
	bash := testenv.RequireTool(t, "bash")
	for _, tool := range []string{"curl", "jq", "xxd", "sha256sum"} {
		testenv.RequireTool(t, tool)
	}
	readme, audit := readDoc(t, readmeDoc), readDoc(t, auditDoc)
	q, err := parseQuickstart(readme, readmeDoc, complete(bash))
	if err != nil {
		t.Fatal(err)
	}
	qa, err := parseQuickstart(audit, auditDoc, complete(bash))
	if err != nil {
		t.Fatal(err)
	}
	if q.commands[0].text != buildCommand {
		t.Fatalf("%s: the Quickstart starts with %q, want %q", q.commands[0].where(), q.commands[0].text, buildCommand)
	}
	ports := proctest.FreePorts(t, 2)
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	s := &session{
		t: t, dir: t.TempDir(), bash: bash,
		// The embedded NATS's default port may be taken here: the README
		// does not name it, ledger serve reads it from the environment.
		env: map[string]string{"LEDGER_NATS_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[1])},
		own: map[string]string{"LEDGER_LISTEN": listen},
	}
	ran := time.Now()
	var first []result
	restartFrom := -1
	for i, c := range q.commands {
		if restartFrom < 0 && strings.HasSuffix(c.text, "&") {
			restartFrom = i
		}
		first = append(first, s.run(c))
	}
	for _, d := range compareOutputs(q, first, ran, false) {
		t.Error(d)
	}

	// "Stop the ledger and start it again: everything is still there." The
	// same commands again print the same: the upload is an identical repeat
	// (200, no event), so even seq stays.
	if restartFrom < 0 {
		t.Fatal("the Quickstart runs nothing in the background")
	}
	s.stopBackground()
	var again []result
	for _, c := range q.commands[restartFrom:] {
		again = append(again, s.run(c))
	}
	for _, d := range compareOutputs(q, again, ran, true) {
		t.Error("after a restart: " + d)
	}

	// docs/audit.md runs `ledger` as installed (on PATH), and the CLI finds
	// the ledger at LEDGER_SERVER and its token in ./data/admin.token.
	s.env["PATH"] = filepath.Join(s.dir, "bin") + string(os.PathListSeparator) + os.Getenv("PATH")
	s.env["LEDGER_SERVER"] = "http://" + listen
	var audited []result
	for _, c := range qa.commands {
		audited = append(audited, s.run(c))
	}
	for _, d := range compareOutputs(qa, audited, ran, false) {
		t.Error(d)
	}

	t.Run("documented outputs that differ fail", func(t *testing.T) {
		checkComparisonsCanFail(t, bash, readme, audit, first, audited, ran)
	})
}

// checkComparisonsCanFail breaks the documented outputs one way at a time
// and expects the comparison with the real run to say so.
func checkComparisonsCanFail(t *testing.T, bash, readme, audit string, results, audited []result, ran time.Time) {
	cases := []struct {
		doc            string
		old, new, want string
	}{
		{readmeDoc, `"enforcement": "on"`, `"enforcement": "auto"`, `"enforcement": documented "auto", printed "on"`},
		{readmeDoc, `"seq": 2`, `"seq": 3`, `"seq": documented 3, printed 2`},
		{readmeDoc, `"days_remaining": 364`, `"days_remaining": 362`, `"days_remaining": documented 362`},
		{readmeDoc, `"features": ["chat_connector", "sso"]`, `"features": ["sso"]`, `"features": documented ["sso"]`},
		{readmeDoc, `"users_limit": 50`, `"users_limit": 0`, `"users_limit": documented 0, printed 50`},
		{readmeDoc, `"resolved_from": "org"`, `"resolved_from": "instance"`, `"resolved_from": documented "instance", printed "org"`},
		{readmeDoc, `"seq": 2, "pending": null`, `"seq": 2`, "keys: documented"},
		{readmeDoc, `"users_active": null`, `"users_active": 0`, `"users_active": documented 0, printed null`},
		{readmeDoc, `"expires": "2027-11-29T14:19:45Z"`, `"expires": "2027-12-29T14:19:45Z"`, "expires − issued_at: documented"},
		{readmeDoc, `"issued_at": "2026-11-29T14:19:45Z"`, `"issued_at": "2026-11-29T14:19:45.5Z"`, `"issued_at": documented "2026-11-29T14:19:45.5Z"`},
		{readmeDoc, `"license_id": "01a227ad-19d4-7dba-a1c1-f53ccd12c136"`, `"license_id": "ACME-1"`, `"license_id": documented "ACME-1"`},
		{readmeDoc, "as above with seq, resolved_from, enforcement null", "as above with seq, resolved_from null", `"enforcement": documented "on", printed null`},
		{readmeDoc, "<!-- quickstart output: /api/license?org=acme -->", "<!-- quickstart output: /api/licence -->", `no command of the marked blocks contains "/api/licence"`},
		{auditDoc, `"subject":"licenses.org.acme"`, `"subject":"licenses.audit.acme"`, `"subject": documented "licenses.audit.acme", printed "licenses.org.acme"`},
		{auditDoc, `"actor":{"kind":"operator","id":"token:…"}`, `"actor":{"kind":"operator","id":"deploy-bot"}`, `"actor": documented {"id":"deploy-bot","kind":"operator"}`},
		{auditDoc, `"at":"2026-12-07T02:45:27.256693Z"`, `"at":"2026-12-07T02:45:27Z"`, `"at": documented "2026-12-07T02:45:27Z"`},
		{auditDoc, `\"type\":\"license.uploaded\",\"schema\":1`, `\"type\":\"license.uploaded\",\"schema\":2`, `"envelope": documented`},
		{auditDoc, "seq 2: ok", "seq 2: verified", `documented "seq 2: verified", printed "seq 2: ok"`},
	}
	for _, c := range cases {
		doc, against := readme, results
		if c.doc == auditDoc {
			doc, against = audit, audited
		}
		if !strings.Contains(doc, c.old) {
			t.Errorf("%s no longer contains %q: update this case", c.doc, c.old)
			continue
		}
		q, err := parseQuickstart(strings.Replace(doc, c.old, c.new, 1), c.doc, complete(bash))
		if err != nil {
			t.Errorf("%q → %q: %v", c.old, c.new, err)
			continue
		}
		if got := strings.Join(compareOutputs(q, against, ran, false), "\n"); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q → %q: want %q, got:\n%s", c.doc, c.old, c.new, c.want, got)
		}
	}
	for _, broken := range []struct{ doc, old, new, want string }{
		{readmeDoc, "<!-- quickstart output: /api/license?org=acme -->\n```json", "<!-- quickstart output: /api/license?org=acme -->\n\n```json", "not followed by a ```json or ```text block"},
		{readmeDoc, "as above with seq, resolved_from, enforcement null", "as above with seq, version null", `no key "version"`},
		{auditDoc, "done < acme.jsonl\n```", "```", "the command does not end within its block"},
	} {
		doc := readme
		if broken.doc == auditDoc {
			doc = audit
		}
		_, err := parseQuickstart(strings.Replace(doc, broken.old, broken.new, 1), broken.doc, complete(bash))
		if err == nil || !strings.Contains(err.Error(), broken.want) {
			t.Errorf("%q → %q: want an error %q, got %v", broken.old, broken.new, broken.want, err)
		}
	}
	if _, err := parseObject([]byte(`{"a":1,"a":2}`)); err == nil {
		t.Error("an object with a key twice parses")
	}
	if _, err := parseObject([]byte(`{"a":1} {}`)); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("data after the object: %v", err)
	}
}
