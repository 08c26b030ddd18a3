package proctest

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// HTTPClient is the client tests talk to their processes with: a stuck
// process fails a request within 5 s instead of hanging the test.
var HTTPClient = &http.Client{Timeout: 5 * time.Second}

// GetOK returns nil when url answers 200, else an error with the status
// and body (a readiness probe for WaitFor).
func GetOK(url string) error {
	resp, err := HTTPClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return nil
}
