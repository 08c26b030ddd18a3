package jwtorg

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// keySource reads the JWKS document.
type keySource interface {
	// fetch returns the document, or notModified when it still has etag;
	// ttl is how long it may be kept (0: unknown).
	fetch(ctx context.Context, etag string) (fetched, error)
	remote() bool
	String() string // for logs and errors
}

type fetched struct {
	body        []byte
	etag        string
	ttl         time.Duration
	notModified bool
}

func newKeySource(cfg Config) keySource {
	if u, err := url.Parse(cfg.Keys); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return &urlSource{url: cfg.Keys, name: u.Redacted(), client: cfg.HTTPClient,
			min: cfg.MinRefresh, max: cfg.MaxRefresh, plain: u.Scheme == "http" && !isLoopback(u.Hostname())}
	}
	return fileSource(cfg.Keys)
}

// fileSource is a JWKS file.
type fileSource string

func (f fileSource) remote() bool   { return false }
func (f fileSource) String() string { return string(f) }

func (f fileSource) fetch(context.Context, string) (fetched, error) {
	fh, err := os.Open(string(f))
	if err != nil {
		return fetched{}, err
	}
	defer fh.Close()
	body, err := readLimited(fh)
	return fetched{body: body}, err
}

// urlSource is a JWKS served over HTTP.
type urlSource struct {
	url, name string
	client    *http.Client
	min, max  time.Duration
	plain     bool // http:// to another host than this one
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (u *urlSource) remote() bool   { return true }
func (u *urlSource) String() string { return u.name }

func (u *urlSource) fetch(ctx context.Context, etag string) (fetched, error) {
	if u.client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHTTPTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return fetched{}, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return fetched{}, err
	}
	defer resp.Body.Close()
	f := fetched{etag: resp.Header.Get("ETag"), ttl: u.bound(ttlOf(resp.Header, time.Now()))}
	switch {
	case resp.StatusCode == http.StatusOK:
		f.body, err = readLimited(resp.Body)
		return f, err
	case resp.StatusCode == http.StatusNotModified && etag != "":
		f.notModified = true
		if f.etag == "" {
			f.etag = etag
		}
		return f, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return fetched{}, fmt.Errorf("HTTP %s", resp.Status)
}

// bound clamps a response's freshness to [min, max]; unknown is
// DefaultRefresh.
func (u *urlSource) bound(ttl time.Duration, known bool) time.Duration {
	if !known {
		ttl = DefaultRefresh
	}
	return min(max(ttl, u.min), u.max)
}

// ttlOf is the freshness lifetime of a response (RFC 9111 §4.2.1): its
// Cache-Control max-age less its Age, else Expires less Date; no-store
// and no-cache make it 0. known is false without any of these.
func ttlOf(h http.Header, now time.Time) (ttl time.Duration, known bool) {
	maxAge, hasMaxAge := int64(0), false
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
				if err != nil || n < 0 {
					return 0, true // an invalid max-age makes the response stale
				}
				if !hasMaxAge {
					maxAge, hasMaxAge = n, true
				}
			}
		}
	}
	if hasMaxAge {
		age, _ := strconv.ParseInt(h.Get("Age"), 10, 64)
		return secs(max(maxAge-max(age, 0), 0)), true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // an invalid Expires means already expired
		}
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			now = d
		}
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// secs is n seconds, saturating.
func secs(n int64) time.Duration {
	if n > int64(1<<62)/int64(time.Second) {
		return 1 << 62
	}
	return time.Duration(n) * time.Second
}

func readLimited(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err == nil && len(body) > maxJWKSBytes {
		err = fmt.Errorf("larger than %d bytes", maxJWKSBytes)
	}
	return body, err
}

// Reload reads the JWKS again: the file, or the URL (regardless of its
// cache headers and of the unknown-kid rate limit). On failure the
// previous keys stay in use and the error (also logged) is returned. When
// a key of the previous set is gone, tokens it verified are verified
// again. Safe for concurrent use.
func (v *Verifier) Reload(ctx context.Context) error {
	return v.load(ctx, triggerReload)
}

// Run refreshes a URL JWKS when its cache headers say it is stale (within
// MinRefresh and MaxRefresh; MinRefresh after a failure) until ctx ends.
// With a file JWKS it returns at once: the caller calls Reload (on SIGHUP).
func (v *Verifier) Run(ctx context.Context) {
	if !v.src.remote() {
		return
	}
	t := time.NewTimer(v.untilNext())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d := v.untilNext(); d <= 0 { // else another load moved the time
			_ = v.load(ctx, triggerScheduled)
		}
		t.Reset(v.untilNext())
	}
}

func (v *Verifier) untilNext() time.Duration { return time.Until(time.Unix(0, v.next.Load())) }

// load reads the JWKS and installs it, or keeps the previous keys and
// returns why not.
func (v *Verifier) load(ctx context.Context, trig trigger) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	f, err := v.src.fetch(ctx, v.etag)
	if err == nil && !f.notModified {
		err = v.install(f.body)
	}
	if err != nil {
		v.next.Store(time.Now().Add(v.cfg.MinRefresh).UnixNano())
		v.stats.refreshed(trig, refreshError)
		err = fmt.Errorf("jwtorg: JWKS %s: %w", v.src, err)
		if trig != triggerInitial {
			v.log.Warn("JWKS refresh failed; the previous keys stay in use", "trigger", trig.String(), "err", err)
		}
		return err
	}
	v.etag = f.etag
	v.next.Store(time.Now().Add(f.ttl).UnixNano())
	v.stats.lastRefresh.Store(time.Now().UnixNano())
	r := refreshOK
	if f.notModified {
		r = refreshNotModified
	}
	v.stats.refreshed(trig, r)
	return nil
}

// install parses body and makes its keys current, unless it is the
// document already installed. Called under loadMu.
func (v *Verifier) install(body []byte) error {
	sum := sha256.Sum256(body)
	if sum == v.lastBody {
		return nil
	}
	ks, skipped, err := parseJWKS(body)
	for _, s := range skipped {
		v.log.Warn("JWKS key not used", "source", v.src.String(), "kid", s.kid, "reason", s.reason)
	}
	if err != nil {
		return err
	}
	prev := v.keys.Load()
	added, removed := diff(prev, ks)
	ks.gen = prev.gen
	if len(removed) > 0 {
		ks.gen++
	}
	v.keys.Store(ks)
	if len(removed) > 0 {
		v.cache.clear() // their entries no longer count (gen); free them
	}
	v.lastBody = sum
	v.log.Info("JWKS loaded", "source", v.src.String(), "keys", ks.n, "added", added, "removed", removed)
	return nil
}

// refetch fetches a URL JWKS again because a token names a kid it does
// not hold, at most once per UnknownKIDInterval; concurrent callers share
// one fetch. It returns when the fetch ends or ctx does; a key set the
// fetch installed is then current.
func (v *Verifier) refetch(ctx context.Context) {
	if !v.src.remote() {
		return
	}
	v.kidMu.Lock()
	done := v.kidInflight
	if done == nil {
		if !v.kidLast.IsZero() && time.Since(v.kidLast) < v.cfg.UnknownKIDInterval {
			v.kidMu.Unlock()
			return
		}
		v.kidLast = time.Now()
		done = make(chan struct{})
		v.kidInflight = done
		// Not the caller's ctx: other callers wait on the same fetch.
		go func() {
			_ = v.load(context.Background(), triggerUnknownKID)
			v.kidMu.Lock()
			v.kidInflight = nil
			v.kidMu.Unlock()
			close(done)
		}()
	}
	v.kidMu.Unlock()
	wait := time.NewTimer(v.cfg.UnknownKIDWait)
	defer wait.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-wait.C:
	}
}
