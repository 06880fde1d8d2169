// Package textio holds the wire layer the SMTP and POP3 engines share: a
// buffered line-oriented connection whose every read and write has a
// deadline and whose line reads are bounded. Who may connect, and the id of
// each connection, are in package netpolicy.
package textio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// ErrLineTooLong is returned by ReadLine when a line exceeds the limit. The
// rest of the line has been consumed (up to and including its LF), so the
// caller may answer with an error and go on reading the next command.
var ErrLineTooLong = errors.New("line too long")

// bufSize is the size of the read and write buffers of a Conn. Reads of
// message data go through the same buffer, so it is also the unit in which a
// message body moves from the socket to the store.
const bufSize = 32 << 10

// Conn is a line-oriented text protocol connection. It is not safe for
// concurrent use except for SetTimeouts, Close and the methods of the
// underlying net.Conn.
type Conn struct {
	raw net.Conn
	dl  *deadlineConn
	R   *bufio.Reader
	W   *bufio.Writer

	scratch []byte
}

// NewConn wraps c. Every read from c waits at most readTimeout, every write
// at most writeTimeout (zero means no deadline).
func NewConn(c net.Conn, readTimeout, writeTimeout time.Duration) *Conn {
	dl := &deadlineConn{Conn: c}
	dl.SetTimeouts(readTimeout, writeTimeout)
	return &Conn{
		raw: c,
		dl:  dl,
		R:   bufio.NewReaderSize(dl, bufSize),
		W:   bufio.NewWriterSize(dl, bufSize),
	}
}

// NetConn returns the connection currently underneath (a *tls.Conn after
// Upgrade).
func (c *Conn) NetConn() net.Conn { return c.raw }

// SetTimeouts changes the per-operation read and write timeouts; they apply
// from the next read or write of the socket on.
func (c *Conn) SetTimeouts(read, write time.Duration) { c.dl.SetTimeouts(read, write) }

// ReadLine reads one line and returns it without its line terminator (LF or
// CRLF). The returned slice is valid until the next read. A line longer than
// max octets (terminator excluded) is consumed and ErrLineTooLong returned.
// At EOF with a partial line, the partial line is discarded and io.EOF or
// io.ErrUnexpectedEOF returned: a command is only a command once its line
// ends.
func (c *Conn) ReadLine(max int) ([]byte, error) {
	line, err := c.R.ReadSlice('\n')
	if err == nil {
		return trimEOL(line, max)
	}
	if err != bufio.ErrBufferFull {
		if len(line) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	// Longer than the buffer: collect up to max, then discard.
	c.scratch = append(c.scratch[:0], line...)
	tooLong := len(c.scratch) > max+2
	for {
		line, err = c.R.ReadSlice('\n')
		if !tooLong {
			c.scratch = append(c.scratch, line...)
			if len(c.scratch) > max+2 {
				tooLong = true
				c.scratch = c.scratch[:0]
			}
		}
		switch err {
		case nil:
			if tooLong {
				return nil, ErrLineTooLong
			}
			return trimEOL(c.scratch, max)
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func trimEOL(line []byte, max int) ([]byte, error) {
	n := len(line) - 1 // drop LF
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	if n > max {
		return nil, ErrLineTooLong
	}
	return line[:n], nil
}

// Pending reports whether a complete pipelined line is already buffered,
// so replies need not be flushed yet. Part of a line does not count: a
// client may send half a command and wait for the replies before it.
func (c *Conn) Pending() bool {
	n := c.R.Buffered()
	if n == 0 {
		return false
	}
	b, _ := c.R.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// Flush writes buffered replies to the socket.
func (c *Conn) Flush() error { return c.W.Flush() }

// FlushIfIdle flushes unless a pipelined command is already waiting, so that
// the replies to a pipelined group leave in one packet (RFC 2920 §3.1 lets
// the server batch them; it must flush before it would block on a read).
func (c *Conn) FlushIfIdle() error {
	if c.Pending() {
		return nil
	}
	return c.W.Flush()
}

// Upgrade replaces the underlying connection (for STARTTLS/STLS). Input
// buffered from the old connection is discarded: RFC 3207 §4.2 and RFC 2595
// §4 require that nothing pipelined in plaintext after the upgrade command is
// acted on. The caller checks Pending before upgrading if it wants to reject
// such input instead.
func (c *Conn) Upgrade(nc net.Conn) {
	read, write := c.dl.Timeouts()
	c.raw = nc
	c.dl = &deadlineConn{Conn: nc}
	c.dl.SetTimeouts(read, write)
	c.R.Reset(c.dl)
	c.W.Reset(c.dl)
}

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.raw.Close() }

// deadlineConn sets a fresh deadline before every read and write, so the
// timeout bounds each wait for the peer rather than the whole exchange
// (RFC 5321 §4.5.3.2: timeouts apply per command and per data block).
type deadlineConn struct {
	net.Conn
	mu          sync.Mutex
	read, write time.Duration
}

func (d *deadlineConn) SetTimeouts(read, write time.Duration) {
	d.mu.Lock()
	d.read, d.write = read, write
	d.mu.Unlock()
}

func (d *deadlineConn) Timeouts() (time.Duration, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.read, d.write
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	d.mu.Lock()
	t := d.read
	d.mu.Unlock()
	if t > 0 {
		if err := d.Conn.SetReadDeadline(time.Now().Add(t)); err != nil {
			return 0, err
		}
	}
	return d.Conn.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	t := d.write
	d.mu.Unlock()
	if t > 0 {
		if err := d.Conn.SetWriteDeadline(time.Now().Add(t)); err != nil {
			return 0, err
		}
	}
	return d.Conn.Write(p)
}
