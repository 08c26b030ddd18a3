package main

import (
	"strings"
	"testing"
)

// LICENSE_EXPIRY_NOTICE_DAYS: positive days 1..365, each once, or off;
// anything else is a usage error (exit 2) naming the variable.
func TestServeExpiryNoticeDaysValidation(t *testing.T) {
	for _, v := range []string{"0", "7,7", "30,x", "366", "-1", "7d"} {
		code, _, stderr := runCmd(t, map[string]string{"LICENSE_EXPIRY_NOTICE_DAYS": v, "DATA_DIR": t.TempDir()}, "serve")
		if code != 2 || !strings.Contains(stderr, "LICENSE_EXPIRY_NOTICE_DAYS") {
			t.Errorf("%q: exit %d: %s", v, code, stderr)
		}
	}
	for _, v := range []string{"30,14,7,1", "off", "90, 1"} {
		cmd := &serveCmd{Listen: "127.0.0.1:8080", GraceDays: 7, Replicas: 1, UsageRate: 60, ExpiryNoticeDays: v}
		if err := cmd.validate(); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}
