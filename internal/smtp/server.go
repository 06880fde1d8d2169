package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/textio"
)

// Defaults for the zero values of Server's limits.
const (
	DefaultMaxMessageBytes = 25 << 20
	DefaultMaxRecipients   = 100
	DefaultMaxLineLength   = 2048
	DefaultMaxErrors       = 10
	DefaultCommandTimeout  = 5 * time.Minute
	DefaultDataTimeout     = 3 * time.Minute
	DefaultWriteTimeout    = time.Minute

	// minLineLength is the smallest command line limit accepted: RFC 5321
	// §4.5.3.1.4 says a command line is at most 512 octets including CRLF,
	// so a server must accept at least that much.
	minLineLength = 512
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtp: server closed")

// Server is an SMTP server. Set its fields before calling Serve or ServeConn
// and do not change them afterwards. The zero value of each limit selects
// its default.
type Server struct {
	Hostname          string             // in the greeting, the EHLO reply and error texts
	Backend           Backend            // receives mail; required
	Logger            *slog.Logger       // nil => slog.Default(); every line of a session carries "conn"=<id>
	MaxMessageBytes   int64              // default 25 MiB; advertised as SIZE n; enforced while DATA/BDAT streams
	MaxRecipients     int                // default 100
	MaxLineLength     int                // command line without CRLF, default 2048, never below 512
	MaxErrors         int                // protocol errors (5xx replies) before 421 and close, default 10
	CommandTimeout    time.Duration      // wait for a command, default 5 min (RFC 5321 §4.5.3.2.7)
	DataTimeout       time.Duration      // wait for each data block, default 3 min (RFC 5321 §4.5.3.2.5)
	MinDataRate       int64              // DATA/BDAT octets per second on average (see dataDeadline); 0: no minimum
	BareNewline       BareNewline        // bare CR, bare LF and NUL in message data; zero value: normalize
	WriteTimeout      time.Duration      // each write of replies, default 1 min
	Limiter           *netpolicy.Limiter // nil => unlimited
	TLSConfig         *tls.Config        // non-nil => STARTTLS offered (RFC 3207)
	AllowInsecureAuth bool               // AUTH allowed without TLS from anywhere
	IsLocal           func(netip.Addr) bool
	RequireAuth       bool // MAIL needs an authenticated session (530 5.7.0)
	RequireHelo       bool // MAIL needs HELO/EHLO first (503 5.5.1); off as Postfix's smtpd_helo_required
	AuthEnabled       bool // advertise and accept AUTH PLAIN LOGIN where allowed

	// MaxJunkCommands bounds NOOP, RSET, VRFY and HELP per session between
	// delivered messages (421 4.7.0 and close beyond it), as Postfix's
	// smtpd_junk_command_limit; default 100, negative for no limit.
	MaxJunkCommands int

	// Policy, when set, is asked at every Stage of a session and may
	// answer, delay or drop in place of the engine (see Policy); nil
	// answers as usual.
	Policy Policy

	// Observer receives connection and transaction events (metrics); nil
	// observes nothing.
	Observer Observer

	lc textio.Lifecycle
}

func (s *Server) hostname() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxMessageBytes() int64 {
	if s.MaxMessageBytes > 0 {
		return s.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

func (s *Server) maxRecipients() int {
	if s.MaxRecipients > 0 {
		return s.MaxRecipients
	}
	return DefaultMaxRecipients
}

func (s *Server) maxLineLength() int {
	switch {
	case s.MaxLineLength <= 0:
		return DefaultMaxLineLength
	case s.MaxLineLength < minLineLength:
		return minLineLength
	}
	return s.MaxLineLength
}

func (s *Server) maxErrors() int {
	if s.MaxErrors > 0 {
		return s.MaxErrors
	}
	return DefaultMaxErrors
}

// DefaultMaxJunkCommands is Postfix's smtpd_junk_command_limit.
const DefaultMaxJunkCommands = 100

// maxJunkCommands returns the junk command limit, 0 for none.
func (s *Server) maxJunkCommands() int {
	switch {
	case s.MaxJunkCommands < 0:
		return 0
	case s.MaxJunkCommands == 0:
		return DefaultMaxJunkCommands
	}
	return s.MaxJunkCommands
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *Server) commandTimeout() time.Duration {
	return orDefault(s.CommandTimeout, DefaultCommandTimeout)
}
func (s *Server) dataTimeout() time.Duration { return orDefault(s.DataTimeout, DefaultDataTimeout) }
func (s *Server) writeTimeout() time.Duration {
	return orDefault(s.WriteTimeout, DefaultWriteTimeout)
}

func (s *Server) isLocal(ip netip.Addr) bool {
	if s.IsLocal != nil {
		return s.IsLocal(ip)
	}
	return ip.IsLoopback()
}

// Serve accepts connections on l and runs a session for each until Shutdown
// is called, then returns ErrServerClosed. For implicit TLS (RFC 8314) pass
// tls.NewListener(l, cfg): sessions on a *tls.Conn complete the handshake
// first and are TLS from the start.
func (s *Server) Serve(l net.Listener) error {
	err := s.lc.Serve(l, s.logger(), s.serve)
	if errors.Is(err, textio.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// ServeConn runs one SMTP session on c and closes c when it ends.
func (s *Server) ServeConn(c net.Conn) {
	if !s.lc.Begin() {
		s.refuseShutdown(c)
		return
	}
	defer s.lc.End()
	s.serve(c)
}

func (s *Server) serve(c net.Conn) {
	host := s.hostname()
	if s.Limiter != nil {
		release, err := s.Limiter.Acquire(c.RemoteAddr())
		if err != nil {
			id := netpolicy.NewID()
			s.logger().Warn("connection refused", "conn", id, "remote_ip", netpolicy.AddrIP(c.RemoteAddr()), "err", err)
			s.observer().ConnRejected("limit")
			refuse(c, s.writeTimeout(), fmt.Sprintf("421 4.7.0 %s Too many connections, try again later (conn %s)\r\n", host, id))
			return
		}
		defer release()
	}
	sess := newSession(s, c)
	if !s.lc.Track(sess) {
		s.refuseShutdown(c)
		return
	}
	defer s.lc.Untrack(sess)
	sess.serve()
}

func (s *Server) refuseShutdown(c net.Conn) {
	s.observer().ConnRejected("shutdown")
	refuse(c, s.writeTimeout(), fmt.Sprintf("421 4.3.2 %s Service shutting down (conn %s)\r\n", s.hostname(), netpolicy.NewID()))
}

// refuse writes a single reply to a connection that gets no session, and
// closes it. The deadline covers reads too: on an implicit-TLS listener the
// write first runs the handshake, which waits for the client's hello; a
// client that sends nothing must not hold the goroutine and its descriptor
// past the limit it was refused by.
func refuse(c net.Conn, timeout time.Duration, reply string) {
	c.SetDeadline(time.Now().Add(timeout))
	c.Write([]byte(reply))
	c.Close()
}

// Shutdown stops accepting connections and ends the sessions: a session
// waiting for a command gets "421 4.3.2 <host> Service shutting down" and is
// closed; a session in the middle of a command (DATA or BDAT included)
// finishes it, gets its reply, then the 421. When ctx ends first, the
// remaining connections are closed and their backend calls canceled.
// Shutdown returns when all sessions are gone: nil, or ctx.Err() if it had to
// force them closed.
func (s *Server) Shutdown(ctx context.Context) error { return s.lc.Shutdown(ctx) }
