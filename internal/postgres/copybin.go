package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// copyBuf is a COPY … FROM STDIN (FORMAT binary) stream, written value by
// value as a batch is folded: a batch's rows reach PostgreSQL as one
// buffer, with no per-value conversion left for the write. Each method
// appends one field of the current row; a value that PostgreSQL cannot
// hold makes the stream fail (err), as a bound parameter would.
type copyBuf struct {
	buf  []byte
	rows int
	err  error
}

// copySignature opens every binary COPY stream: the signature, no flags,
// no header extension.
const copySignature = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// copyBufs keeps the buffers of written batches for the next ones: a
// catch-up writes megabytes per batch, which would otherwise be allocated,
// zeroed and grown by copying every time.
var copyBufs sync.Pool // of *[]byte

// maxKeptBuf bounds the buffers copyBufs keeps.
const maxKeptBuf = 64 << 20

// grow makes room for n more bytes, so that a batch whose size is
// estimated up front is written without growing the buffer.
func (c *copyBuf) grow(n int) {
	if c.buf == nil {
		if p, ok := copyBufs.Get().(*[]byte); ok {
			c.buf = append((*p)[:0], copySignature...)
		} else {
			c.buf = append(make([]byte, 0, max(64<<10, n+len(copySignature)+2)), copySignature...)
		}
	}
	if cap(c.buf)-len(c.buf) < n+2 { // +2: copyTo's trailer
		c.buf = append(c.buf[:len(c.buf):len(c.buf)], make([]byte, n+2)...)[:len(c.buf)]
	}
}

// release hands the buffer back for another batch; c is empty after it.
func (c *copyBuf) release() {
	if b := c.buf; b != nil && cap(b) <= maxKeptBuf {
		b = b[:0]
		copyBufs.Put(&b)
	}
	*c = copyBuf{}
}

// row starts a row of n fields.
func (c *copyBuf) row(n int) {
	if c.buf == nil {
		c.grow(0)
	}
	c.rows++
	c.buf = binary.BigEndian.AppendUint16(c.buf, uint16(n))
}

func (c *copyBuf) null() { c.buf = binary.BigEndian.AppendUint32(c.buf, math.MaxUint32) }

func (c *copyBuf) field(n int) { c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(n)) }

func (c *copyBuf) int8(v int64) {
	c.field(8)
	c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(v))
}

func (c *copyBuf) int4(v int) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		c.fail(fmt.Errorf("%d is out of range for an int column", v))
		c.null()
		return
	}
	c.field(4)
	c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(int32(v)))
}

func (c *copyBuf) int4OrNull(v *int) {
	if v == nil {
		c.null()
		return
	}
	c.int4(*v)
}

func (c *copyBuf) bool(v bool) {
	c.field(1)
	if v {
		c.buf = append(c.buf, 1)
	} else {
		c.buf = append(c.buf, 0)
	}
}

// text appends a text (or bytea) value.
func (c *copyBuf) text(s string) {
	c.field(len(s))
	c.buf = append(c.buf, s...)
}

func (c *copyBuf) bytes(b []byte) {
	c.field(len(b))
	c.buf = append(c.buf, b...)
}

func (c *copyBuf) textOrNull(s *string) {
	if s == nil {
		c.null()
		return
	}
	c.text(*s)
}

// jsonb appends JSON text as jsonb (format version 1).
func (c *copyBuf) jsonb(b []byte) {
	c.field(len(b) + 1)
	c.buf = append(c.buf, 1)
	c.buf = append(c.buf, b...)
}

// uuid appends a uuid given as text (any form uuid.Parse reads).
func (c *copyBuf) uuid(s string) {
	u, err := uuid.Parse(s)
	if err != nil {
		c.fail(fmt.Errorf("%q is not a UUID", s))
		c.null()
		return
	}
	c.field(16)
	c.buf = append(c.buf, u[:]...)
}

func (c *copyBuf) uuidOrNull(s *string) {
	if s == nil {
		c.null()
		return
	}
	c.uuid(*s)
}

// y2k is where PostgreSQL counts timestamps from.
var y2k = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// timestamptz appends t in microseconds since 2000-01-01 UTC (sub-
// microsecond digits dropped, as PostgreSQL keeps microseconds).
func (c *copyBuf) timestamptz(t time.Time) {
	c.int8((t.Unix()-y2k)*1_000_000 + int64(t.Nanosecond()/1000))
}

func (c *copyBuf) timestamptzOrNull(t *time.Time) {
	if t == nil {
		c.null()
		return
	}
	c.timestamptz(*t)
}

// textArray appends a one-dimensional text[] (never NULL).
func (c *copyBuf) textArray(a []string) {
	if len(a) == 0 {
		c.field(12)
		c.buf = binary.BigEndian.AppendUint32(c.buf, 0)  // dimensions
		c.buf = binary.BigEndian.AppendUint32(c.buf, 0)  // no NULLs
		c.buf = binary.BigEndian.AppendUint32(c.buf, 25) // text
		return
	}
	n := 20
	for _, s := range a {
		n += 4 + len(s)
	}
	c.field(n)
	c.buf = binary.BigEndian.AppendUint32(c.buf, 1)
	c.buf = binary.BigEndian.AppendUint32(c.buf, 0)
	c.buf = binary.BigEndian.AppendUint32(c.buf, 25)
	c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(len(a))) // length
	c.buf = binary.BigEndian.AppendUint32(c.buf, 1)              // lower bound
	for _, s := range a {
		c.text(s)
	}
}

func (c *copyBuf) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// copyTo sends the rows to table's columns on conn (within its transaction, if any), and returns how
// many there were.
func (c *copyBuf) copyTo(ctx context.Context, conn *pgconn.PgConn, table string, columns []string) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.rows == 0 {
		return 0, nil
	}
	quoted := make([]string, len(columns))
	for i, col := range columns {
		quoted[i] = quoteIdentifier(col)
	}
	stream := binary.BigEndian.AppendUint16(c.buf, math.MaxUint16) // the trailer: -1
	_, err := conn.CopyFrom(ctx, bytes.NewReader(stream), "COPY "+quoteIdentifier(table)+
		" ("+strings.Join(quoted, ", ")+") FROM STDIN (FORMAT binary)")
	if err != nil && conn.IsClosed() {
		// A copy that fails on a broken connection may return while pgconn's
		// sender goroutine still reads the buffer: it must not go back to
		// copyBufs for another batch to overwrite, nor be sent again.
		c.buf = nil
		c.fail(err)
	}
	return c.rows, err
}
