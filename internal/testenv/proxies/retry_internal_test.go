package proxies

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// A port taken between picking and binding makes the start retry on another
// one instead of failing, or worse, waiting on someone else's listener.
func TestStartRetriesATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var picked []string
	pickPort = func() (string, error) {
		if len(picked) == 0 {
			picked = append(picked, taken.Addr().String())
			return picked[0], nil
		}
		addr, err := freePort()
		picked = append(picked, addr)
		return addr, err
	}
	t.Cleanup(func() { pickPort = freePort })

	// Caddy gives up on a taken port at once (nginx retries for 2.5 s).
	base := StartCaddy(t, "127.0.0.1:1", "127.0.0.1:1")
	if len(picked) != 2 || base != "http://"+picked[1] {
		t.Fatalf("started at %s after picking %v, want the second port", base, picked)
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if server := resp.Header.Get("Server"); !strings.Contains(server, "Caddy") {
		t.Errorf("Server = %q: not Caddy answering", server)
	}
}
