package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows how far a long operation is: on a terminal a bar (done,
// total, rate, ETA), otherwise a log line "<what> progress" every 5 s and
// at the end. It starts at its first update, whose done is the baseline of
// the rate; the total may grow between updates. Safe for concurrent use.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	useBar bool
	log    *slog.Logger
	what   string
	unit   string
	bytes  bool

	bar     *progressbar.ProgressBar
	started bool
	closed  bool // finished: later updates (a library's straggling goroutine) are dropped
	first   uint64
	start   time.Time
	lastLog time.Time
}

// newProgress reports to w (a bar) or log. mode is "auto" (a bar when w is
// a terminal), "bar" or "log"; unit names what is counted, or bytes counts
// bytes.
func newProgress(w io.Writer, mode string, log *slog.Logger, what, unit string, bytes bool) *progress {
	useBar := mode == "bar"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			useBar = true
		}
	}
	return &progress{w: w, useBar: useBar, log: log, what: what, unit: unit, bytes: bytes}
}

// update records done units out of total.
func (p *progress) update(done, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := time.Now()
	if !p.started {
		p.started, p.start, p.first, p.lastLog = true, now, done, now
		if p.useBar {
			opts := []progressbar.Option{progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(p.what),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionFullWidth()}
			if p.bytes {
				opts = append(opts, progressbar.OptionShowBytes(true))
			} else {
				opts = append(opts, progressbar.OptionSetItsString(p.unit), progressbar.OptionShowIts())
			}
			p.bar = progressbar.NewOptions64(int64(total-min(total, done)), opts...)
		}
	}
	if p.bar != nil {
		p.bar.ChangeMax64(int64(total - min(total, p.first)))
		p.bar.Set64(int64(done - min(done, p.first)))
		return
	}
	if p.useBar || (now.Sub(p.lastLog) < 5*time.Second && done < total) {
		return
	}
	p.lastLog = now
	rate := 0.0
	if s := now.Sub(p.start).Seconds(); s > 0 {
		rate = float64(done-min(done, p.first)) / s
	}
	eta := "-"
	if rate > 0 && total > done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	p.log.Info(p.what+" progress", "done", done, "total", total, "per_second", int64(rate), "eta", eta)
}

// finish ends the report for good: updates after it are dropped, so
// nothing is written once the command has returned.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
	}
	p.bar, p.closed = nil, true
}
