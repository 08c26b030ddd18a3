package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseMemStatus(t *testing.T) {
	const status = `Name:	gatekeeper
VmPeak:	 1234568 kB
VmHWM:	   98304 kB
VmRSS:	   65536 kB
RssAnon:	   50000 kB
`
	m, err := parseMemStatus(strings.NewReader(status))
	if err != nil || m.RSS != 64<<20 || m.HWM != 96<<20 {
		t.Errorf("parse: %+v, %v; want RSS 64 MiB, HWM 96 MiB", m, err)
	}
	if _, err := parseMemStatus(strings.NewReader("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS (a kernel thread) parsed")
	}
	if _, err := parseMemStatus(strings.NewReader("VmRSS:\t12 MB\n")); err == nil {
		t.Error("VmRSS in another unit parsed")
	}
	own, err := readMemStatus(os.Getpid())
	if err != nil || own.RSS <= 0 || own.HWM < own.RSS {
		t.Errorf("this process: %+v, %v", own, err)
	}
}

// A child's lines arrive by their first word, its memory is read from
// outside, and SIGTERM ends it.
func TestProc(t *testing.T) {
	p, err := startProc("/bin/sh", []string{"-c", "echo noise; echo oops >&2; echo ready 127.0.0.1:1 2 3; exec sleep 30"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rest, at, err := p.line(context.Background(), "ready", 10*time.Second)
	if err != nil || rest != "127.0.0.1:1 2 3" || at.Before(p.started) {
		t.Fatalf("ready line: %q at %v, %v", rest, at, err)
	}
	if m, err := p.memory(); err != nil || m.RSS <= 0 {
		t.Errorf("memory: %+v, %v", m, err)
	}
	p.stop(5 * time.Second)
	select {
	case <-p.done:
	default:
		t.Fatal("still running after stop")
	}
	if !strings.Contains(p.stderr.String(), "oops") {
		t.Errorf("stderr kept: %q", p.stderr.String())
	}
	// A process that exits before its line: the error says so, with its
	// stderr.
	p, err = startProc("/bin/sh", []string{"-c", "echo failed to start >&2; exit 3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.line(context.Background(), "ready", 10*time.Second); err == nil || !strings.Contains(err.Error(), "failed to start") {
		t.Errorf("exited early: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	b.Write([]byte("0123456"))
	b.Write([]byte("789abc"))
	if got := b.String(); got != "56789abc" {
		t.Errorf("tail = %q", got)
	}
}

func TestFmtCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 5000: "5,000", 100000: "100,000", 1000000: "1,000,000", -1234: "-1,234"} {
		if got := fmtCount(n); got != want {
			t.Errorf("fmtCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestStartTargets(t *testing.T) {
	if d, rss, _ := startTargets(100_000); d != time.Second || rss != 150<<20 {
		t.Errorf("100k: %v %d", d, rss)
	}
	if d, rss, _ := startTargets(1_000_000); d != 10*time.Second || rss != 1536<<20 {
		t.Errorf("1M: %v %d", d, rss)
	}
}
