package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Defaults of a Policy.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxResponse = 64 << 10
)

// Policy fences deliveries. The zero value is the strict default: https
// only, no loopback, link-local, unspecified or multicast address, a 10 s
// timeout and 64 KiB read back.
type Policy struct {
	// AllowHTTP are hosts (as in the URL, lower case) that may be reached
	// over plain http.
	AllowHTTP []string
	// AllowAddrs are addresses or prefixes a delivery may connect to even
	// though they are loopback, link-local, unspecified or multicast (for
	// a receiver on the same host, say "127.0.0.1/32").
	AllowAddrs []netip.Prefix
	// Timeout bounds a whole delivery: connect, TLS, request, answer.
	Timeout time.Duration
	// MaxResponse bounds the bytes of the answer read (the rest is
	// dropped, the connection closed).
	MaxResponse int64
}

// ErrRefused wraps every refusal of the policy.
var ErrRefused = errors.New("webhook: refused by the outbound policy")

// CheckURL parses raw and checks it against the policy: an absolute
// http(s) URL with a host, no user information and no fragment; http only
// for an allowed host. Addresses are checked when a delivery connects
// (names resolve then).
func (p Policy) CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: scheme %q: want https", ErrRefused, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%w: %q has no host", ErrRefused, raw)
	case u.User != nil:
		return nil, fmt.Errorf("%w: user information in the URL (put credentials in the receiver's verification, not the URL)", ErrRefused)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%w: a fragment in the URL", ErrRefused)
	case u.Scheme == "http" && !slices.Contains(p.AllowHTTP, strings.ToLower(u.Hostname())):
		return nil, fmt.Errorf("%w: http://%s: webhooks go over https unless the host is allowed plain http", ErrRefused, u.Host)
	}
	return u, nil
}

// checkAddr refuses a connection to an address the policy fences off.
func (p Policy) checkAddr(a netip.Addr) error {
	a = a.Unmap()
	for _, pre := range p.AllowAddrs {
		if pre.Contains(a) {
			return nil
		}
	}
	switch {
	case a.IsLoopback():
		return fmt.Errorf("%w: %s is a loopback address", ErrRefused, a)
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is link-local (cloud metadata services live there)", ErrRefused, a)
	case a.IsUnspecified():
		return fmt.Errorf("%w: %s is unspecified", ErrRefused, a)
	case a.IsMulticast():
		return fmt.Errorf("%w: %s is multicast", ErrRefused, a)
	case metadataV6.Contains(a):
		return fmt.Errorf("%w: %s is a cloud metadata address", ErrRefused, a)
	}
	return nil
}

// metadataV6 is the IPv6 metadata service of EC2 (fd00:ec2::254), outside
// link-local.
var metadataV6 = netip.MustParsePrefix("fd00:ec2::254/128")

// Client returns an HTTP client under the policy: it connects only to
// addresses checkAddr allows (checked on the resolved address, so a name
// pointing inside is refused too), follows no redirect and times out.
func (p Policy) Client() *http.Client {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: address %q", ErrRefused, address)
		}
		return p.checkAddr(ap.Addr())
	}}
	tr := &http.Transport{DialContext: dialer.DialContext, Proxy: nil, TLSHandshakeTimeout: timeout,
		ResponseHeaderTimeout: timeout, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Result is what a receiver answered to a delivery.
type Result struct {
	Status   int           // 0 when no answer came
	Body     []byte        // at most MaxResponse bytes of it
	Duration time.Duration // from sending to the end of the answer read
}

// OK reports whether the receiver took the delivery (2xx). A redirect is
// not followed and is no success.
func (r Result) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Deliver POSTs body (JSON) to target, signed with keys, as delivery id
// at ts, through client (made by Client), and reads back at most
// MaxResponse bytes. An error means no answer (refused, unreachable,
// timed out); an answer of any status is a Result.
func (p Policy) Deliver(ctx context.Context, client *http.Client, target string, keys [][]byte, id string, ts time.Time, body []byte) (Result, error) {
	u, err := p.CheckURL(target)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "license-ledger-webhooks")
	SetHeaders(req.Header, keys, id, ts, body)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return Result{Duration: time.Since(start)}, err
	}
	defer resp.Body.Close()
	limit := p.MaxResponse
	if limit <= 0 {
		limit = DefaultMaxResponse
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	res := Result{Status: resp.StatusCode, Body: got, Duration: time.Since(start)}
	if err != nil {
		return res, err
	}
	return res, nil
}
