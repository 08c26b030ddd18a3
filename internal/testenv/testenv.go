// Package testenv holds test helpers shared by every package's tests. Its
// subpackages start real dependencies: natstest (embedded NATS) and pgtest
// (PostgreSQL).
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// RequireTool returns the path of an external program the test drives. A
// missing tool skips the test on a developer machine and fails it when the
// CI variable is set: CI must never pass by skipping.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required (CI is set): install it (.ci/run does)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

// Buffer is a bytes.Buffer that several goroutines may write to and read
// from at once: a logger's or a child process's output under test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Reset forgets everything written so far.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}
