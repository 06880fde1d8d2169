package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/textio"
)

// Choices made where the RFCs leave room (see also the comments at each
// command):
//
//   - Refused plaintext login (no TLS, not local, not AllowInsecureAuth) is
//     answered "-ERR [AUTH] Plaintext authentication disallowed on non-secure
//     connections": RFC 3206 §5 [AUTH] says retrying the same way cannot help.
//   - CAPA lists USER and SASL PLAIN only where plaintext login is allowed
//     on the connection, STLS only on a plain connection with TLSConfig set;
//     the list is the same in both states (RFC 2449 §5). APOP is not offered.
//   - PASS is accepted only as the command right after a successful USER.
//   - Unknown, malformed and out-of-state commands, over-long lines, bad
//     base64, [IN-USE] and backend errors count toward MaxErrors; failed
//     credentials count toward MaxAuthFailures. "no such message" counts
//     toward neither.
//   - An AUTH continuation line may be up to 4096 octets (saslLineLength).
//   - A timeout (login phase or idle) is answered "-ERR [SYS/TEMP]
//     autologout: idle timeout" and the connection closed, without UPDATE.
//   - QUIT in TRANSACTION answers "+OK bye" after Commit and after the lock
//     is released, so the client may log in again at once.

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Defaults for the zero values of Server's fields.
const (
	// RFC 2449 §4: a command line is at most 255 octets including the CRLF.
	DefaultMaxLineLength = 255
	DefaultLoginTimeout  = 60 * time.Second
	// RFC 1939 §3: an inactivity autologout timer must be at least 10 minutes.
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultMaxAuthFailures = 3
	DefaultMaxErrors       = 10
)

// saslLineLength bounds a client response line inside an AUTH exchange. RFC
// 5034 §4 limits only the AUTH command line itself to 255 octets; a PLAIN
// response holding long credentials may be longer.
const saslLineLength = 4096

// Server is a POP3 server. Set its fields before calling Serve or ServeConn
// and do not change them afterwards. Zero values mean the defaults documented
// on each field.
type Server struct {
	// Logger receives the log; every line of a session carries the attribute
	// "conn" with the session id. Nil means slog.Default().
	Logger *slog.Logger
	// Backend authenticates users and opens their maildrops. Required.
	Backend Backend
	// Hostname is this server's name, logged with every connection.
	Hostname string
	// MaxLineLength bounds a command line, CRLF included (default 255, RFC
	// 2449 §4). A longer line is answered -ERR and counts as an error.
	MaxLineLength int
	// LoginTimeout bounds the whole AUTHORIZATION state (default 60 s).
	LoginTimeout time.Duration
	// IdleTimeout bounds the wait for each command in the TRANSACTION state
	// (default 10 min, RFC 1939 §3).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client (default 1 min).
	WriteTimeout time.Duration
	// MaxAuthFailures is the number of failed logins after which the
	// connection is closed (default 3).
	MaxAuthFailures int
	// MaxErrors is the number of unknown, malformed or out-of-state commands
	// after which the connection is closed (default 10).
	MaxErrors int
	// Limiter caps concurrent connections; nil means unlimited. A client over
	// the cap gets "-ERR [SYS/TEMP] too many connections" and is closed.
	Limiter *netpolicy.Limiter
	// TLSConfig enables STLS (RFC 2595 §4) when non-nil.
	TLSConfig *tls.Config
	// AllowInsecureAuth allows plaintext login (USER/PASS, AUTH PLAIN) on
	// connections that are neither TLS nor local.
	AllowInsecureAuth bool
	// IsLocal reports whether a client address counts as local, where
	// plaintext login is allowed without TLS. Nil means IsLoopback.
	IsLocal func(netip.Addr) bool
	// Observer receives connection and retrieval events (metrics); nil
	// observes nothing.
	Observer Observer

	lc textio.Lifecycle
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxLineLength() int {
	if s.MaxLineLength > 0 {
		return s.MaxLineLength
	}
	return DefaultMaxLineLength
}

func (s *Server) loginTimeout() time.Duration {
	if s.LoginTimeout > 0 {
		return s.LoginTimeout
	}
	return DefaultLoginTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (s *Server) maxAuthFailures() int {
	if s.MaxAuthFailures > 0 {
		return s.MaxAuthFailures
	}
	return DefaultMaxAuthFailures
}

func (s *Server) maxErrors() int {
	if s.MaxErrors > 0 {
		return s.MaxErrors
	}
	return DefaultMaxErrors
}

func (s *Server) isLocal(ip netip.Addr) bool {
	if s.IsLocal != nil {
		return s.IsLocal(ip)
	}
	return ip.IsLoopback()
}

// Serve accepts connections on l and serves each in its own goroutine until
// Shutdown, when it returns ErrServerClosed. For implicit TLS (POP3S, RFC
// 8314 §3.3) pass a tls.NewListener: the handshake is done with a deadline
// and the session counts as secure.
func (s *Server) Serve(l net.Listener) error {
	err := s.lc.Serve(l, s.logger(), s.serve)
	if errors.Is(err, textio.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// ServeConn serves one client connection and returns when it is closed. It
// closes c. Use it with connections accepted elsewhere; Shutdown covers
// them too.
func (s *Server) ServeConn(c net.Conn) {
	if !s.lc.Begin() {
		s.refuse(c, msgShuttingDown)
		return
	}
	defer s.lc.End()
	s.serve(c)
}

// refuse answers -ERR [SYS/TEMP] text on a connection we will not serve and
// closes it.
func (s *Server) refuse(c net.Conn, text string) {
	if text == msgTooManyConns {
		s.observer().ConnRejected("limit")
	} else {
		s.observer().ConnRejected("shutdown")
	}
	c.SetDeadline(time.Now().Add(s.writeTimeout())) // a TLS conn reads the handshake before it can write
	c.Write([]byte("-ERR [" + codeSysTemp + "] " + text + "\r\n"))
	c.Close()
}

// Shutdown stops the server gracefully. It closes the listeners, then ends
// every session at its next command boundary: a session waiting for a
// command gets "-ERR [SYS/TEMP] server shutting down" at once, one busy with
// a command (a RETR streaming out, a login) finishes it first. Sessions end
// without the UPDATE state, so nothing DELE'd is removed (RFC 1939 §6: only
// QUIT enters UPDATE), and every maildrop is closed, releasing its lock.
// When ctx ends first, the remaining connections are closed forcibly.
// Shutdown returns when every session is gone: nil, or ctx.Err() if it had
// to force them.
func (s *Server) Shutdown(ctx context.Context) error { return s.lc.Shutdown(ctx) }
