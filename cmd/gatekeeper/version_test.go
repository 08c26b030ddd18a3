package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
)

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--version"}, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: time.Now})
	if code != 0 || !strings.HasPrefix(out.String(), "gatekeeper dev (commit ") || errb.Len() != 0 {
		t.Fatalf("gatekeeper --version: %d %q %q", code, out.String(), errb.String())
	}
}
