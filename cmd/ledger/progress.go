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
// the rate; the total may grow between updates. The bar shows the rate and
// the time left once they are measured (a second after the start, with
// something done), never a "0 events/hr" guess. Safe for concurrent use.
//
// Log lines never land on the bar's line: a command writes its logs and
// notes through a termWriter (newTermWriter), which erases the bar before
// a line and lets the bar redraw below it.
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
// bytes. With w a termWriter, the bar draws through it (see termWriter).
func newProgress(w io.Writer, mode string, log *slog.Logger, what, unit string, bytes bool) *progress {
	dest := w
	if tw, ok := w.(*termWriter); ok {
		dest, w = tw.w, tw.barSide()
	}
	useBar := mode == "bar"
	if mode == "auto" {
		if f, ok := dest.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			useBar = true
		}
	}
	return &progress{w: w, useBar: useBar, log: log, what: what, unit: unit, bytes: bytes}
}

// rateAfter is how long the bar measures before it shows a rate.
const rateAfter = time.Second

// rate is the measured rate in units per second, and the time left, once
// rateAfter has passed with something done (ok false before).
func (p *progress) rate(now time.Time, done, total uint64) (perSecond float64, left time.Duration, ok bool) {
	elapsed := now.Sub(p.start)
	if elapsed < rateAfter || done <= p.first {
		return 0, 0, false
	}
	perSecond = float64(done-p.first) / elapsed.Seconds()
	if total > done {
		left = time.Duration(float64(total-done) / perSecond * float64(time.Second)).Round(time.Second)
	}
	return perSecond, left, true
}

// describe is the bar's description: what, then the measured rate (the
// bar shows a byte rate itself, once there is one) and the time left.
func (p *progress) describe(now time.Time, done, total uint64) string {
	r, left, ok := p.rate(now, done, total)
	switch {
	case !ok:
		return p.what
	case p.bytes:
		return fmt.Sprintf("%s, %s left", p.what, left)
	case r >= 1:
		return fmt.Sprintf("%s %.0f %s/s, %s left", p.what, r, p.unit, left)
	}
	return fmt.Sprintf("%s %.0f %s/min, %s left", p.what, r*60, p.unit, left)
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
			// The rate and the time left are the description's (describe):
			// the bar's own start at 0 /hr and an unbounded ETA.
			opts := []progressbar.Option{progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(p.what),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(false),
				progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionFullWidth()}
			if p.bytes {
				opts = append(opts, progressbar.OptionShowBytes(true))
			}
			p.bar = progressbar.NewOptions64(int64(total-min(total, done)), opts...)
		}
	}
	if p.bar != nil {
		p.bar.Describe(p.describe(now, done, total))
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

// termWriter is a command's stderr while a progress bar may be drawn on
// it: log lines and notes go through Write, the bar through barSide. A
// line written while the bar holds the cursor's line first erases the bar
// (carriage return, clear line), so the line stands alone and the bar
// redraws under it at its next update. Safe for concurrent use.
type termWriter struct {
	mu    sync.Mutex
	w     io.Writer
	onBar bool // the cursor is on the bar's line
}

func newTermWriter(w io.Writer) *termWriter {
	if tw, ok := w.(*termWriter); ok {
		return tw
	}
	return &termWriter{w: w}
}

// Write writes a log line (or any text but the bar's).
func (t *termWriter) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.onBar {
		if _, err := io.WriteString(t.w, "\r\033[2K"); err != nil {
			return 0, err
		}
		t.onBar = false
	}
	return t.w.Write(b)
}

// barSide is the writer the bar draws with.
func (t *termWriter) barSide() io.Writer { return barWriter{t} }

type barWriter struct{ t *termWriter }

func (b barWriter) Write(p []byte) (int, error) {
	b.t.mu.Lock()
	defer b.t.mu.Unlock()
	n, err := b.t.w.Write(p)
	if len(p) > 0 {
		b.t.onBar = p[len(p)-1] != '\n'
	}
	return n, err
}
