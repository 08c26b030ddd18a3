package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A load run counts only the answers it expects: a denial is an error,
// not throughput.
func TestLoadRefusesNon200(t *testing.T) {
	r := &runner{}
	defer r.close()
	ok, err := r.serve(ok200)
	if err != nil {
		t.Fatal(err)
	}
	denied, err := r.serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-License-Error", "license_missing")
		w.WriteHeader(http.StatusForbidden)
	}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := load(context.Background(), ok+"/", http.Header{}, 4, 200*time.Millisecond)
	if err != nil || res.requests == 0 || res.p99 < res.p50 || res.rate() <= 0 {
		t.Fatalf("load on a 200 handler: %+v, %v", res, err)
	}
	if _, err := load(context.Background(), denied+"/", http.Header{}, 4, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("load on a 403 handler: %v", err)
	}
}

func TestQuantile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	if q := quantile(v, 0.99); q != 99 {
		t.Errorf("p99 of 1..100 = %d", q)
	}
	if q := quantile(v, 0.5); q != 50 {
		t.Errorf("p50 of 1..100 = %d", q)
	}
	if q := quantile(nil, 0.5); q != 0 {
		t.Errorf("empty: %d", q)
	}
}
