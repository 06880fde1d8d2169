package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/textio"
)

// state is a POP3 session state (RFC 1939 §3).
type state int

const (
	// stateAuthorization: the client has to identify itself.
	stateAuthorization state = iota
	// stateTransaction: the maildrop is locked and the client works on it.
	stateTransaction
)

func (st state) String() string {
	if st == stateTransaction {
		return "TRANSACTION"
	}
	return "AUTHORIZATION"
}

// session is one client connection.
type session struct {
	srv   *Server
	id    string
	log   *slog.Logger
	guard *textio.GuardConn
	c     *textio.Conn
	info  ConnInfo

	state         state
	loginDeadline time.Time // end of the AUTHORIZATION state
	user          string    // name given by USER
	haveUser      bool      // the previous command was a successful USER
	authFailures  int
	errors        int
	quit          bool // close the connection after this command's reply

	// TRANSACTION state.
	drop      Maildrop
	username  string
	msgs      []Message // the snapshot taken at login
	deleted   []bool    // marked by DELE, indexed like msgs
	retrieved int       // RETR commands answered, for the log

	stopping atomic.Bool // Shutdown asked this session to end
}

// serve runs the session on c until it ends, then closes c.
func (s *Server) serve(c net.Conn) {
	id := netpolicy.NewID()
	log := s.logger().With("conn", id)
	remote := c.RemoteAddr()

	if s.Limiter != nil {
		release, err := s.Limiter.Acquire(remote)
		if err != nil {
			log.Warn("pop3 connection refused", "remote", remote.String(), "err", err)
			s.refuse(c, msgTooManyConns)
			return
		}
		defer release()
	}

	g := textio.NewGuardConn(c)
	ss := &session{
		srv:   s,
		id:    id,
		log:   log,
		guard: g,
		c:     textio.NewConn(g, s.idleTimeout(), s.writeTimeout()),
		info: ConnInfo{
			ID:         id,
			RemoteAddr: remote,
			LocalAddr:  c.LocalAddr(),
			RemoteIP:   netpolicy.AddrIP(remote),
		},
		loginDeadline: time.Now().Add(s.loginTimeout()),
	}
	if !s.lc.Track(ss) {
		s.refuse(c, msgShuttingDown)
		return
	}
	defer s.lc.Untrack(ss)
	defer ss.close()
	defer ss.recoverPanic()

	log.Info("pop3 connect", "remote", remote.String(), "local", c.LocalAddr().String(), "host", s.Hostname)
	// RFC 1939 §4: the AUTHORIZATION state, and the whole login, is bounded.
	g.SetReadLimit(ss.loginDeadline)

	if tc, ok := c.(*tls.Conn); ok {
		if err := ss.handshake(tc); err != nil {
			log.Info("pop3 tls handshake failed", "err", err)
			return
		}
	}
	ss.run()
}

// handshake completes the server side of a TLS handshake within the login
// deadline and marks the session secure.
func (ss *session) handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithDeadline(ss.srv.lc.Context(), ss.loginDeadline)
	defer cancel()
	tc.SetDeadline(ss.loginDeadline)
	err := tc.HandshakeContext(ctx)
	tc.SetDeadline(time.Time{})
	if err != nil {
		return err
	}
	st := tc.ConnectionState()
	ss.info.TLS = true
	ss.log.Info("pop3 tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// run greets the client and reads commands until the session ends.
func (ss *session) run() {
	ss.ok("Postoffice POP3 ready")
	maxLine := ss.srv.maxLineLength() - 2 // RFC 2449 §4 counts the CRLF
	for !ss.quit {
		if err := ss.c.FlushIfIdle(); err != nil {
			ss.log.Info("pop3 write failed", "err", err)
			return
		}
		if ss.stopping.Load() {
			ss.sayShutdown()
			return
		}
		line, err := ss.c.ReadLine(maxLine)
		switch {
		case err == nil:
		case errors.Is(err, textio.ErrLineTooLong):
			ss.badCommand(msgLineTooLong)
			ss.checkErrors()
			continue
		default:
			ss.readFailed(err)
			return
		}
		cmd, err := parseCommand(line)
		if err != nil {
			ss.badCommand(msgUnknownCommand)
			ss.checkErrors()
			continue
		}
		ss.dispatch(cmd)
		ss.checkErrors()
	}
	ss.c.Flush()
}

// checkErrors ends the session once MaxErrors bad commands were answered.
func (ss *session) checkErrors() {
	if ss.errors >= ss.srv.maxErrors() && !ss.quit {
		ss.log.Warn("pop3 too many errors, closing", "errors", ss.errors)
		ss.fail("", msgTooManyErrors)
		ss.quit = true
	}
}

// readFailed ends the session after a failed command read: the client went
// away, was idle too long, or Shutdown interrupted the wait.
func (ss *session) readFailed(err error) {
	var ne net.Error
	switch {
	case ss.stopping.Load():
		ss.sayShutdown()
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 1939 §3: an autologout timer ends the session without
		// entering the UPDATE state.
		ss.log.Info("pop3 autologout", "state", ss.state.String())
		ss.fail(codeSysTemp, "autologout: idle timeout")
		ss.c.Flush()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		ss.log.Info("pop3 client closed connection", "state", ss.state.String())
	default:
		ss.log.Info("pop3 read failed", "err", err)
	}
}

func (ss *session) sayShutdown() {
	ss.log.Info("pop3 closing for shutdown", "state", ss.state.String())
	ss.fail(codeSysTemp, msgShuttingDown)
	ss.c.Flush()
}

// dispatch runs one command: the single place where keywords meet code.
func (ss *session) dispatch(cmd command) {
	// RFC 1939 §7: PASS is valid only right after a successful USER.
	afterUser := ss.haveUser
	ss.haveUser = false

	if ss.state == stateAuthorization {
		switch cmd.Verb {
		case "USER":
			ss.cmdUser(cmd)
		case "PASS":
			ss.cmdPass(cmd, afterUser)
		case "AUTH":
			ss.cmdAuth(cmd)
		case "STLS":
			ss.cmdStls(cmd)
		case "CAPA":
			ss.cmdCapa(cmd)
		case "QUIT":
			ss.cmdQuit(cmd)
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			ss.badCommand("command not valid in AUTHORIZATION state")
		default:
			ss.badCommand(msgUnknownCommand)
		}
		return
	}
	switch cmd.Verb {
	case "STAT":
		ss.cmdStat(cmd)
	case "LIST":
		ss.cmdList(cmd)
	case "RETR":
		ss.cmdRetr(cmd)
	case "DELE":
		ss.cmdDele(cmd)
	case "NOOP":
		ss.cmdNoop(cmd)
	case "RSET":
		ss.cmdRset(cmd)
	case "TOP":
		ss.cmdTop(cmd)
	case "UIDL":
		ss.cmdUidl(cmd)
	case "CAPA":
		ss.cmdCapa(cmd)
	case "QUIT":
		ss.cmdQuit(cmd)
	case "USER", "PASS", "AUTH", "STLS", "APOP":
		ss.badCommand("command not valid in TRANSACTION state")
	default:
		ss.badCommand(msgUnknownCommand)
	}
}

// plaintextAllowed reports whether a password may be sent in the clear on
// this connection: over TLS, from a local client, or when configured.
func (ss *session) plaintextAllowed() bool {
	return ss.info.TLS || ss.srv.AllowInsecureAuth || ss.srv.isLocal(ss.info.RemoteIP)
}

// recoverPanic turns a panic in the session into a logged stack, a last
// -ERR and a closed connection; the maildrop is closed by close.
func (ss *session) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	ss.log.Error("pop3 panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	ss.failTemp("internal error")
	ss.c.Flush()
}

// close releases the maildrop without committing anything (RFC 1939 §6:
// only QUIT in TRANSACTION state removes messages) and closes the
// connection.
func (ss *session) close() {
	ss.releaseMaildrop()
	ss.c.Close()
	ss.log.Info("pop3 disconnect")
}

// releaseMaildrop closes the maildrop, if any, releasing its lock.
func (ss *session) releaseMaildrop() {
	if ss.drop == nil {
		return
	}
	if err := ss.drop.Close(); err != nil {
		ss.log.Error("pop3 maildrop close failed", "user", ss.username, "err", err)
	}
	ss.drop = nil
}

// Stop asks the session to end at its next command boundary and wakes
// it if it is waiting for a command. Safe to call from any goroutine.
func (ss *session) Stop() {
	ss.stopping.Store(true)
	ss.guard.Interrupt()
}

// ForceClose closes the connection under a running session. Safe to call
// from any goroutine.
func (ss *session) ForceClose() {
	ss.stopping.Store(true)
	ss.guard.Conn.Close()
}
