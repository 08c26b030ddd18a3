package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// An --expires before issued_at names the flags that fix it, whether
// issued_at was given or is now.
func TestSignExpiresInThePastNamesTheFix(t *testing.T) {
	dir, _ := keygen(t, "k1")
	key := filepath.Join(dir, "k1.key")
	base := []string{"sign", "--key", key, "--org", "acme", "--customer", "Acme", "--tier", "starter"}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--expires", "2020-01-01T00:00:00Z"}, []string{"--expires 2020-01-01T00:00:00Z is not after issued_at, now", "without --issued-at", "+365d", "--issued-at"}},
		{[]string{"--expires", "2027-01-01T00:00:00Z", "--issued-at", "2027-06-01T00:00:00Z"}, []string{"is not after --issued-at 2027-06-01T00:00:00Z", "later --expires"}},
	} {
		code, out, errs := runCmd(t, "", append(base, c.args...)...)
		if code != 2 || out != "" {
			t.Fatalf("%v: exit %d, stdout %q", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: %q does not say %q", c.args, errs, w)
			}
		}
	}
}
