package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := cliRun(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "ledger dev (commit ") || !strings.Contains(out, ", go1.") || errOut != "" {
			t.Fatalf("ledger %v: %d %q %q", args, code, out, errOut)
		}
	}
	l := startLedger(t, t.TempDir(), nil)
	if v := metric(t, l, `ledger_build_info{goversion="`+goVersion()+`",revision="unknown",version="dev"}`); v != 1 {
		t.Fatalf("ledger_build_info: %v", v)
	}
}

func goVersion() string { return runtime.Version() }
