package textio

import (
	"net"
	"sync"
	"time"
)

// longAgo is a deadline in the past: a read with it fails at once with a
// timeout.
var longAgo = time.Unix(1, 0)

// GuardConn sits under a Conn (and under a TLS layer started by
// STARTTLS/STLS) and caps every read deadline set on it:
//
//   - SetReadLimit bounds reads by an absolute time, so a whole phase (a
//     command line, an AUTH exchange, the POP3 login) must finish in time
//     however the client trickles its octets: each read's own timeout
//     cannot stretch it.
//   - Interrupt makes the pending read and every later one time out at
//     once, without a race between a shutdown check and a blocking read:
//     the cap applies to each deadline as it is set.
//
// Writes are not affected.
type GuardConn struct {
	net.Conn
	mu          sync.Mutex
	limit       time.Time // zero: none
	interrupted bool
}

// NewGuardConn wraps c.
func NewGuardConn(c net.Conn) *GuardConn { return &GuardConn{Conn: c} }

func (g *GuardConn) capped(t time.Time) time.Time {
	if g.interrupted {
		return longAgo
	}
	if !g.limit.IsZero() && (t.IsZero() || t.After(g.limit)) {
		return g.limit
	}
	return t
}

// SetReadDeadline sets the read deadline, capped.
func (g *GuardConn) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Conn.SetReadDeadline(g.capped(t))
}

// SetDeadline sets both deadlines; the read side is capped.
func (g *GuardConn) SetDeadline(t time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.Conn.SetReadDeadline(g.capped(t))
}

// SetReadLimit caps the read deadlines set from now on at t; zero removes
// the cap. A Conn with a read timeout sets a deadline before every read, so
// the cap holds from its next read.
func (g *GuardConn) SetReadLimit(t time.Time) {
	g.mu.Lock()
	g.limit = t
	g.mu.Unlock()
}

// Interrupt makes the pending read and every later one time out at once.
// Safe to call from any goroutine.
func (g *GuardConn) Interrupt() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.interrupted = true
	g.Conn.SetReadDeadline(longAgo)
}

// Interrupted reports whether Interrupt was called.
func (g *GuardConn) Interrupted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.interrupted
}
