package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
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

// The bar shows a rate only once measured (never "0 events/hr"), and a
// log line written while it is drawn erases it first: the two never
// share a line.
func TestProgressBarRateAndLogLines(t *testing.T) {
	var out bytes.Buffer
	tw := newTermWriter(&out)
	log := slog.New(slog.NewTextHandler(tw, nil))
	p := newProgress(tw, "bar", log, "replay", "events", false)
	p.update(100, 1000) // the baseline
	p.update(110, 1000)
	if s := out.String(); !strings.Contains(s, "replay") || strings.Contains(s, "/hr") || strings.Contains(s, "events/") {
		t.Fatalf("before a second: %q", s)
	}
	log.Info("a log line")
	s := out.String()
	i := strings.Index(s, "time=")
	if i < 0 || !strings.HasSuffix(s[:i], "\r\033[2K") {
		t.Fatalf("the log line shares the bar's line: %q", s)
	}
	p.mu.Lock()
	p.start = p.start.Add(-2 * time.Second) // a measured rate
	p.mu.Unlock()
	time.Sleep(150 * time.Millisecond) // the bar's throttle
	p.update(600, 1000)
	if rest := out.String()[len(s):]; !strings.Contains(rest, "events/s") || !strings.Contains(rest, "left") {
		t.Fatalf("after two seconds, no rate: %q", rest)
	}
	p.finish()
	if !strings.HasSuffix(out.String(), "\n") {
		t.Fatalf("the bar's line is not ended: %q", out.String())
	}
	log.Info("after")
	if strings.HasSuffix(out.String()[:strings.LastIndex(out.String(), "time=")], "\033[2K") {
		t.Fatalf("a finished bar is erased again: %q", out.String())
	}
}
