package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ledger test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.TLSCert, c.TLSKey = certFile, keyFile })
	httpsURL := strings.Replace(l.url, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", httpsURL+"/api/license?org=acme", nil)
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"missing"`) {
		t.Fatalf("https: %d %s", resp.StatusCode, body)
	}
	if resp, err := http.Get(l.url + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP answered on a TLS listener")
	}
}

func TestNonLoopbackListenNeedsTLS(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	for _, c := range []struct {
		listen string
		tls    bool
		flag   bool
		ok     bool
	}{
		{"127.0.0.1:8080", false, false, true},
		{"localhost:8080", false, false, true},
		{"[::1]:8080", false, false, true},
		{"0.0.0.0:8080", false, false, false},
		{":8080", false, false, false},
		{"10.0.0.5:8080", false, true, true},
		{"10.0.0.5:8080", true, false, true},
	} {
		cmd := &serveCmd{Listen: c.listen, GraceDays: 7, Replicas: 1, UsageRate: 60, InsecureHTTP: c.flag}
		if c.tls {
			cmd.TLSCert, cmd.TLSKey = certFile, keyFile
		}
		err := cmd.validate()
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
		if err != nil && cli.ExitCode(io.Discard, "ledger", err) != cli.ExitUsage {
			t.Errorf("%s: not a usage error", c.listen)
		}
	}
}

// The embedded NATS off loopback speaks TLS only, like the HTTP listener:
// without a certificate ledger serve refuses to start (exit 2) and says
// how; with one, a gatekeeper's connection (NATS_TLS_CA) reads the stream
// over TLS and a plaintext client is turned away. Loopback stays
// plaintext.
func TestEmbeddedNATSOffLoopbackNeedsTLS(t *testing.T) {
	for _, args := range [][]string{{"--nats-listen", "0.0.0.0:4299"}, {"--nats-listen", ":4299"},
		{"--nats-listen", "0.0.0.0:4299", "--nats-listen-tls-cert", "c.pem"}} {
		code, _, errOut := cliRun(t, "", append([]string{"serve", "--data-dir", t.TempDir()}, args...)...)
		if code != cli.ExitUsage || !strings.Contains(errOut, "is not loopback: serve TLS (--nats-listen-tls-cert/--nats-listen-tls-key)") &&
			!strings.Contains(errOut, "go together") {
			t.Errorf("serve %v: exit %d %q", args, code, errOut)
		}
	}
	t.Setenv("LEDGER_NATS_LISTEN", "0.0.0.0:4299")
	if code, _, errOut := cliRun(t, "", "serve", "--data-dir", t.TempDir()); code != cli.ExitUsage || !strings.Contains(errOut, "--nats-listen 0.0.0.0:4299 is not loopback") {
		t.Errorf("LEDGER_NATS_LISTEN off loopback: exit %d %q", code, errOut)
	}

	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	port := proctest.FreePorts(t, 1)[0]
	startLedgerWith(t, dir, func(c *serveCmd) {
		c.NATSListen, c.NATSListenTLSCert, c.NATSListenTLSKey = fmt.Sprintf("0.0.0.0:%d", port), certFile, keyFile
	})
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	reader := filepath.Join(dir, "nats", "reader.nk")
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: url, NKeyFile: reader, TLSCA: certFile, Role: natsauth.RoleReader})
	if err != nil {
		t.Fatalf("reader over TLS: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	if _, info, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false); err != nil || info.LastSeq == 0 {
		t.Fatalf("reader over TLS: %+v %v", info, err)
	}
	// A client speaking plaintext: the server announces TLS as required,
	// and closes the connection instead of answering.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO: %q %v", info, err)
	}
	fmt.Fprint(c, "CONNECT {\"verbose\":false}\r\nPING\r\n")
	if rest, err := io.ReadAll(r); strings.Contains(string(rest), "PONG") {
		t.Fatalf("a plaintext client got an answer: %q (%v)", rest, err)
	}
	// The nats.go default (no CA for this certificate) does not get in
	// either.
	if nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without the CA connected")
	}
}

// A listener's private key that group or others may read is refused, the
// fix named, before anything starts.
func TestServeRefusesAnExposedTLSKey(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]func(*serveCmd){
		"--tls-key":             func(c *serveCmd) { c.TLSCert, c.TLSKey = certFile, keyFile },
		"--nats-listen-tls-key": func(c *serveCmd) { c.NATSListenTLSCert, c.NATSListenTLSKey = certFile, keyFile },
	} {
		cmd := &serveCmd{Listen: "127.0.0.1:0", Replicas: 1, UsageRate: 60, NATSListen: "127.0.0.1:0"}
		set(cmd)
		err := cmd.validate()
		var ce *cli.Error
		if !errors.As(err, &ce) || ce.Code != cli.ExitUsage || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "chmod 600 "+keyFile) {
			t.Errorf("%s 0644: %v, want a usage error naming the flag and chmod 600", name, err)
		}
	}
	os.Chmod(keyFile, 0o600)
	cmd := &serveCmd{Listen: "127.0.0.1:0", Replicas: 1, UsageRate: 60, NATSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile}
	if err := cmd.validate(); err != nil {
		t.Errorf("a 0600 key: %v", err)
	}
}
