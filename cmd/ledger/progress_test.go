package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Off a terminal, progress is a log line at most every 5 s and one at the
// end, with the rate and the totals; a bar never reaches a log.
func TestProgressLogLines(t *testing.T) {
	var logs, out bytes.Buffer
	p := newProgress(&out, "auto", slog.New(slog.NewTextHandler(&logs, nil)), "replay", "events", false)
	p.update(100, 1000) // baseline
	p.update(500, 1000) // within 5 s: quiet
	if logs.Len() != 0 {
		t.Fatalf("logged before 5 s: %s", logs.String())
	}
	p.update(1000, 1000)
	p.finish()
	p.update(1000, 1000) // after finish: dropped
	line := logs.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, `msg="replay progress" done=1000 total=1000`) ||
		!strings.Contains(line, "per_second=") || out.Len() != 0 {
		t.Fatalf("log %q, output %q", line, out.String())
	}

	// Forced bar: drawn on w, nothing logged.
	logs.Reset()
	p = newProgress(&out, "bar", slog.New(slog.NewTextHandler(&logs, nil)), "snapshot", "", true)
	p.update(0, 2048)
	p.update(2048, 2048)
	p.finish()
	if logs.Len() != 0 || !strings.Contains(out.String(), "snapshot") {
		t.Fatalf("bar: log %q, output %q", logs.String(), out.String())
	}
}
