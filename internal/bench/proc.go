package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the bench measures from outside, as an
// operator's tools see it: started at a known instant, its stdout read
// line by line, the end of its stderr kept for errors, its memory read
// from /proc.
type proc struct {
	cmd     *exec.Cmd
	started time.Time     // just before the process was created
	lines   chan string   // stdout, one line each; closed at EOF
	done    chan struct{} // closed once the process has exited
	waitErr error
	stderr  *tailBuffer
}

// startProc starts exe with args and exactly env (nothing inherited, so
// that GOGC and the like are the program's defaults).
func startProc(exe string, args, env []string) (*proc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	p := &proc{cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// line waits for the next stdout line whose first word is prefix and
// returns the rest of it, and when it arrived.
func (p *proc) line(ctx context.Context, prefix string, timeout time.Duration) (string, time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				return "", time.Time{}, fmt.Errorf("exited (%v) before %q: %s", p.waitErr, prefix, p.stderr.String())
			}
			if rest, found := strings.CutPrefix(l, prefix+" "); found {
				return rest, time.Now(), nil
			}
		case <-t.C:
			return "", time.Time{}, fmt.Errorf("no %q line within %s: %s", prefix, timeout, p.stderr.String())
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		}
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after timeout).
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for range p.lines { // drain, so that the child never blocks on stdout
		}
	}()
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("did not exit within %s of SIGTERM", timeout)
	}
}

// memory reads the process's resident set size now and at its peak.
func (p *proc) memory() (memStatus, error) { return readMemStatus(p.pid()) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// memStatus is a process's memory as the kernel accounts it: what a
// container's memory limit and the OOM killer see.
type memStatus struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: the resident peak so far
}

// readMemStatus reads /proc/PID/status (Linux).
func readMemStatus(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	return parseMemStatus(f)
}

// parseMemStatus reads VmRSS and VmHWM (in kB) from a /proc/PID/status.
func parseMemStatus(r io.Reader) (memStatus, error) {
	var m memStatus
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "kB")), 10, 64)
		if err != nil {
			return memStatus{}, fmt.Errorf("%s: %w", name, err)
		}
		if name == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return memStatus{}, err
	}
	if m.RSS == 0 {
		return memStatus{}, errors.New("no VmRSS")
	}
	return m, nil
}

// freePort is a loopback port free at the time of the call, for programs
// that must be told their address before they start.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pollOK polls url until it answers 200, every interval, and returns when
// it first did. Refused connections and other statuses are retried; the
// process exiting ends the wait.
func pollOK(ctx context.Context, p *proc, url string, interval, timeout time.Duration) (time.Time, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		resp, err := client.Get(url)
		if err == nil {
			at := time.Now()
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return at, nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return time.Time{}, fmt.Errorf("exited (%v) before %s answered 200: %s", p.waitErr, url, p.stderr.String())
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s did not answer 200 within %s (last: %s)", url, timeout, last)
		}
	}
}
