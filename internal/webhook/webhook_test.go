package webhook

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
)

// The Standard Webhooks specification's example: this secret, id,
// timestamp and body sign to this value.
func TestSignMatchesTheSpecificationsExample(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSecrets(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if key, err := ParseSecret(s); err != nil || len(key) != secretBytes || !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("NewSecret %q: %d bytes, %v", s, len(key), err)
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!", "whsec_AAAA"} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted", bad)
		}
	}
}

// Deliveries verified by the standardwebhooks package from the npm
// registry, an implementation written elsewhere: a delivery signed with
// the receiver's secret is accepted, one signed with another is refused,
// and during a rotation (two signatures) either secret verifies.
func TestAStandardWebhooksReceiverVerifiesDeliveries(t *testing.T) {
	node := testenv.RequireTool(t, "node")
	npm := testenv.RequireTool(t, "npm")
	dir := t.TempDir()
	install := exec.Command(npm, "install", "--no-audit", "--no-fund", "--silent", "standardwebhooks@1.3.0")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install standardwebhooks: %v\n%s", err, out)
	}
	script := filepath.Join(dir, "receiver.js")
	if err := os.WriteFile(script, []byte(receiverJS), 0o600); err != nil {
		t.Fatal(err)
	}
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSecret()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, node, script, secret)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "listening ") {
		t.Fatalf("the receiver did not start: %q", lines.Text())
	}
	url := "http://127.0.0.1:" + strings.TrimPrefix(lines.Text(), "listening ") + "/hook"
	p := Policy{AllowHTTP: []string{"127.0.0.1"}, AllowAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	client := p.Client()
	key, _ := ParseSecret(secret)
	otherKey, _ := ParseSecret(other)
	body := []byte(`{"id":"0193a5b0-0000-7000-8000-000000000001","type":"license.expiring","org":"acme","data":{"days":14}}`)
	for _, c := range []struct {
		name string
		keys [][]byte
		body []byte
		want int
	}{
		{"signed with its secret", [][]byte{key}, body, 204},
		{"signed with another secret", [][]byte{otherKey}, body, 400},
		{"a rotation: both signatures", [][]byte{otherKey, key}, body, 204},
		{"the body changed after signing", [][]byte{key}, nil, 400},
	} {
		id := "0193a5b0-0000-7000-8000-0000000000" + map[int]string{204: "aa", 400: "bb"}[c.want]
		res, err := deliverTampered(ctx, p, client, url, c.keys, id, body, c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Status != c.want {
			t.Errorf("%s: the receiver answered %d %s, want %d", c.name, res.Status, res.Body, c.want)
		}
	}
}

// deliverTampered delivers signed, or, when sent is nil, signed with a
// byte of the body changed on the way.
func deliverTampered(ctx context.Context, p Policy, client *http.Client, url string, keys [][]byte, id string, signed, sent []byte) (Result, error) {
	if sent != nil {
		return p.Deliver(ctx, client, url, keys, id, time.Now(), signed)
	}
	changed := append([]byte(nil), signed...)
	changed[len(changed)-3] = '5'
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(changed)))
	SetHeaders(req.Header, keys, id, time.Now(), signed)
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, err
	}
	resp.Body.Close()
	return Result{Status: resp.StatusCode}, nil
}

const receiverJS = `const http = require('http');
const { Webhook } = require('standardwebhooks');
const wh = new Webhook(process.argv[2]);
const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    try {
      wh.verify(body, req.headers);
      res.writeHead(204);
      res.end();
    } catch (e) {
      res.writeHead(400);
      res.end(String(e));
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`

func TestPolicyURLs(t *testing.T) {
	p := Policy{AllowHTTP: []string{"receiver.internal"}}
	for _, ok := range []string{"https://hooks.example.com/x", "https://hooks.example.com:8443/a?b=c", "http://receiver.internal/h", "http://RECEIVER.internal/h"} {
		if _, err := p.CheckURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://hooks.example.com/x", "ftp://hooks.example.com/", "https:///x", "https://user:pw@hooks.example.com/",
		"https://hooks.example.com/#frag", "//hooks.example.com/x", "hooks.example.com", "javascript:alert(1)"} {
		if _, err := p.CheckURL(bad); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want a refusal", bad, err)
		}
	}
}

// A delivery never reaches a loopback, link-local (metadata) or
// unspecified address unless allowed, follows no redirect, times out, and
// reads back at most MaxResponse bytes.
func TestPolicyFencesDeliveries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		case "/big":
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	key := make([]byte, 32)
	strict := Policy{AllowHTTP: []string{"127.0.0.1"}}
	if _, err := strict.Deliver(ctx, strict.Client(), srv.URL+"/", [][]byte{key}, "id", time.Now(), []byte(`{}`)); !errors.Is(err, ErrRefused) {
		t.Errorf("loopback without leave: %v, want a refusal", err)
	}
	for _, target := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0/", "http://[fd00:ec2::254]/"} {
		p := Policy{AllowHTTP: []string{"169.254.169.254", "fe80::1", "0.0.0.0", "fd00:ec2::254"}, Timeout: time.Second}
		if _, err := p.Deliver(ctx, p.Client(), target, [][]byte{key}, "id", time.Now(), []byte(`{}`)); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want a refusal", target, err)
		}
	}
	local := Policy{AllowHTTP: []string{"127.0.0.1"}, AllowAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Timeout: 500 * time.Millisecond, MaxResponse: 1000}
	client := local.Client()
	if res, err := local.Deliver(ctx, client, srv.URL+"/", [][]byte{key}, "id", time.Now(), []byte(`{}`)); err != nil || !res.OK() {
		t.Fatalf("allowed loopback: %v %v", res, err)
	}
	if res, err := local.Deliver(ctx, client, srv.URL+"/redirect", [][]byte{key}, "id", time.Now(), []byte(`{}`)); err != nil || res.Status != http.StatusFound || res.OK() {
		t.Errorf("a redirect: %d %v, want 302 not followed and no success", res.Status, err)
	}
	if _, err := local.Deliver(ctx, client, srv.URL+"/slow", [][]byte{key}, "id", time.Now(), []byte(`{}`)); err == nil {
		t.Error("a receiver slower than the timeout: no error")
	}
	if res, err := local.Deliver(ctx, client, srv.URL+"/big", [][]byte{key}, "id", time.Now(), []byte(`{}`)); err != nil || len(res.Body) != 1000 {
		t.Errorf("a 1 MiB answer: %d bytes read, %v; want 1000", len(res.Body), err)
	}
}
