package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is what a load run measured.
type loadResult struct {
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (l loadResult) rate() float64 { return float64(l.requests) / l.elapsed.Seconds() }

// serve runs h on a loopback listener with the gatekeeper's server
// settings and returns its base URL.
func (r *runner) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	r.defer_(func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// compare loads each target in turn, rounds times, interleaved so that
// both see the same background load, and keeps each target's best round
// (highest throughput; its p50 and p99 are that round's).
func compare(ctx context.Context, hdr http.Header, workers, rounds int, d time.Duration, urls ...string) ([]loadResult, error) {
	best := make([]loadResult, len(urls))
	for range rounds {
		for i, u := range urls {
			res, err := load(ctx, u, hdr, workers, d)
			if err != nil {
				return nil, err
			}
			if res.rate() > best[i].rateOrZero() {
				best[i] = res
			}
		}
	}
	return best, nil
}

func (l loadResult) rateOrZero() float64 {
	if l.requests == 0 {
		return 0
	}
	return l.rate()
}

// load sends GET url with hdr from workers keep-alive connections for d
// (after a short warm-up) and measures throughput and latency. Every
// answer must be 200: anything else means the figure is not measuring
// what it claims.
func load(ctx context.Context, url string, hdr http.Header, workers int, d time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers,
		DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if _, err := loadRun(ctx, client, url, hdr, workers, min(d/4, 500*time.Millisecond)); err != nil { // warm-up: connections, caches
		return loadResult{}, err
	}
	return loadRun(ctx, client, url, hdr, workers, d)
}

func loadRun(ctx context.Context, client *http.Client, url string, hdr http.Header, workers int, d time.Duration) (loadResult, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lats []time.Duration
		ferr error
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				mu.Lock()
				ferr = err
				mu.Unlock()
				return
			}
			req.Header = hdr.Clone()
			own := make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: status %d (%s)", url, resp.StatusCode, resp.Header.Get("X-License-Error"))
					}
				}
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
				own = append(own, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ferr != nil {
		return loadResult{}, ferr
	}
	if len(lats) == 0 {
		return loadResult{}, errors.New("no request completed")
	}
	slices.Sort(lats)
	return loadResult{requests: len(lats), elapsed: elapsed, p50: quantile(lats, 0.5), p99: quantile(lats, 0.99)}, nil
}

// quantile of sorted values (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
