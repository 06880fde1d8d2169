package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/textio"
)

// session is one SMTP connection: its state machine and the commands.
//
// States (RFC 5321 §4.1.4): connected (no HELO) -> greeted (HELO/EHLO) ->
// in a transaction (MAIL accepted, env != nil) -> with recipients (len(env.To)
// > 0) -> DATA or BDAT -> back to greeted. RSET and HELO/EHLO return to
// greeted; STARTTLS returns to connected.
type session struct {
	srv   *Server
	guard *textio.GuardConn
	conn  *textio.Conn
	log   *slog.Logger
	info  ConnInfo
	host  string
	ctx   context.Context
	stop  context.CancelFunc
	start time.Time

	helo     string // HELO/EHLO argument; "" before either
	esmtp    bool
	tls      *tls.ConnectionState
	authUser string

	env       *Envelope // current transaction; nil outside one
	bdat      *bdatWriter
	bdatStale bool // a BDAT of this transaction failed: discard chunks until RSET/MAIL/EHLO

	errors  int
	junk    int  // NOOP, RSET, VRFY, HELP since the start or the last delivered message
	noCount bool // replies do not count toward MaxErrors (see count)
	closing bool // close after the queued replies are sent
	dropped bool // the Policy dropped the connection: close without sending more
	refused bool // the Policy answered 554 for the greeting: only QUIT (RFC 5321 §3.1)

	lastCode int // code of the last reply queued (for the Observer)

	mu      sync.Mutex
	idle    bool // waiting for a command
	stopped bool // Shutdown asked this session to end
}

func newSession(srv *Server, c net.Conn) *session {
	id := netpolicy.NewID()
	ctx, stop := context.WithCancel(srv.lc.Context())
	s := &session{
		srv:   srv,
		guard: textio.NewGuardConn(c),
		log:   srv.logger().With("conn", id),
		host:  srv.hostname(),
		ctx:   ctx,
		stop:  stop,
		start: time.Now(),
		info: ConnInfo{
			ID:         id,
			RemoteAddr: c.RemoteAddr(),
			LocalAddr:  c.LocalAddr(),
			RemoteIP:   netpolicy.AddrIP(c.RemoteAddr()),
		},
	}
	s.conn = textio.NewConn(s.guard, srv.commandTimeout(), srv.writeTimeout())
	return s
}

// Stop is called by Server.Shutdown: a session waiting for a command
// is interrupted now; a busy one sees stopped when it next waits.
func (s *session) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.idle {
		s.guard.Interrupt()
	}
}

// enterIdle marks the session as waiting for a command. It reports false
// if the server is shutting down.
func (s *session) enterIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.srv.lc.Closing() {
		return false
	}
	s.idle = true
	return true
}

// leaveIdle marks the session busy. It reports false if Shutdown
// interrupted the wait: the command just read is then not executed.
func (s *session) leaveIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idle = false
	return !s.stopped
}

func (s *session) serve() {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in session", "panic", v, "stack", string(debug.Stack()))
			s.replyf(codeUnavailable, "4.3.0", "%s Internal error, closing connection (conn %s)", s.host, s.info.ID)
			s.conn.Flush()
		}
		s.endTransaction()
		s.stop()
		s.conn.Close()
		s.log.Info("disconnect", "remote_ip", s.info.RemoteIP, "duration", time.Since(s.start).Round(time.Millisecond))
	}()
	s.log.Info("connect", "remote_ip", s.info.RemoteIP, "remote", s.info.RemoteAddr.String())

	if tc, ok := s.guard.Conn.(*tls.Conn); ok {
		// Implicit TLS (RFC 8314 §3.3): the handshake comes before the
		// greeting.
		if err := s.handshake(tc); err != nil {
			s.log.Info("tls handshake failed", "err", err)
			return
		}
	}

	if !s.greet() {
		return
	}
	for !s.closing {
		if !s.enterIdle() {
			s.replyf(codeUnavailable, "4.3.2", "%s Service shutting down", s.host)
			break
		}
		// RFC 2920 §3.1: replies to a pipelined group may wait while a whole
		// command is buffered; with only part of one, the client may be
		// waiting for them.
		if err := s.conn.FlushIfIdle(); err != nil {
			s.leaveIdle()
			s.log.Info("write failed", "err", err)
			return
		}
		// RFC 5321 §4.5.3.2.7 bounds the wait for a command; we bound the
		// whole command line, so that trickled octets do not extend it.
		s.guard.SetReadLimit(time.Now().Add(s.srv.commandTimeout()))
		line, err := s.conn.ReadLine(s.srv.maxLineLength())
		s.guard.SetReadLimit(time.Time{})
		if !s.leaveIdle() {
			s.replyf(codeUnavailable, "4.3.2", "%s Service shutting down", s.host)
			break
		}
		switch {
		case errors.Is(err, textio.ErrLineTooLong):
			// RFC 5321 §4.5.3.1.4: 500 for a command line too long. The
			// enhanced code is a syntax error (RFC 3463 X.5.2): X.5.6 is
			// registered for an AUTH exchange line only (RFC 4954 §6).
			s.reply(codeSyntax, "5.5.2", "Error: line too long")
		case err != nil:
			s.readFailed("command", err)
			return
		default:
			s.dispatch(line)
		}
		if !s.closing && s.errors >= s.srv.maxErrors() {
			s.log.Warn("too many errors", "errors", s.errors)
			s.replyf(codeUnavailable, "4.7.0", "%s Too many errors, closing connection (conn %s)", s.host, s.info.ID)
			s.closing = true
		}
	}
	if !s.dropped {
		s.conn.Flush()
	}
}

// greet sends the greeting, or what the Policy answers at StageConnect. It
// reports whether the session goes on.
func (s *session) greet() bool {
	err := s.policy(StageConnect, "", nil)
	if err == nil {
		s.replyf(codeReady, "", "%s ESMTP Postoffice ready", s.host)
		return true
	}
	var e *Error
	switch {
	case errors.Is(err, ErrDrop):
		s.log.Info("connection dropped by policy", "at", "connect")
		return false
	case errors.As(err, &e) && e.Code == codeFailed:
		// RFC 5321 §3.1: a 554 instead of the greeting; the server then
		// MUST wait for QUIT, answering other commands 503.
		s.log.Info("connect refused", "reply", e.Error())
		s.reply(e.Code, e.Enhanced, e.Message)
		s.refused = true
		return true
	case errors.As(err, &e):
		// 421: the server closes (RFC 5321 §3.8).
		s.log.Info("connect refused", "reply", e.Error())
		s.reply(e.Code, e.Enhanced, e.Message)
	default:
		s.log.Error("connect policy failed", "err", err)
		s.replyf(codeUnavailable, "4.3.0", "%s Service not available (conn %s)", s.host, s.info.ID)
	}
	s.conn.Flush()
	return false
}

// ForceClose closes the connection under any TLS layer, for Shutdown when
// its context ends.
func (s *session) ForceClose() {
	if tc, ok := s.guard.Conn.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	s.guard.Conn.Close()
}

// readFailed handles a failed read of the client: a timeout gets a 421
// (RFC 5321 §4.5.3.2: the server may close after its timeout), anything
// else (EOF, reset) just ends the session.
func (s *session) readFailed(what string, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.log.Info("timeout", "waiting_for", what)
		s.replyf(codeUnavailable, "4.4.2", "%s Timeout exceeded, closing connection (conn %s)", s.host, s.info.ID)
		s.conn.Flush()
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.log.Debug("client closed connection", "waiting_for", what)
		return
	}
	s.log.Info("read failed", "waiting_for", what, "err", err)
}

// dispatch runs one command line: the one dispatch point of the protocol.
func (s *session) dispatch(line []byte) {
	if hasControl(line) {
		// RFC 5321 §4.1.1.1, §2.3.8: a command line is text (SP, HTAB and
		// printable characters); NUL, a bare CR or another control has no
		// place in one. Refused as Postfix does, and counted as an error.
		s.reply(codeParamSyntax, "5.5.2", "Error: control character in command")
		return
	}
	cmd := string(line)
	verb, arg, _ := strings.Cut(cmd, " ")
	verb = strings.ToUpper(verb)
	if s.tooMuchJunk(verb) {
		return
	}
	if s.refused && verb != "QUIT" {
		// RFC 5321 §3.1: after a 554 greeting, 503 to all but QUIT.
		s.reply(codeBadSequence, "5.5.1", "Error: service refused at connect, send QUIT")
		return
	}
	switch verb {
	case "HELO":
		s.cmdHelo(arg, false)
	case "EHLO":
		s.cmdHelo(arg, true)
	case "MAIL":
		s.cmdMail(arg)
		s.srv.observer().MailReply(s.lastCode)
	case "RCPT":
		s.cmdRcpt(arg)
	case "DATA":
		s.cmdData(arg)
	case "BDAT":
		s.cmdBdat(arg)
	case "RSET":
		s.cmdRset(arg)
	case "NOOP":
		// RFC 5321 §4.1.1.9: NOOP may carry a parameter, which is ignored.
		s.reply(codeOK, "2.0.0", "Ok")
	case "VRFY":
		s.cmdVrfy(arg)
	case "EXPN":
		s.reply(codeNotImplemented, "5.5.1", "Error: EXPN not supported")
	case "HELP":
		s.reply(codeHelp, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS AUTH")
	case "QUIT":
		s.reply(codeClosing, "2.0.0", "Bye")
		s.closing = true
	case "STARTTLS":
		s.cmdStartTLS(arg)
	case "AUTH":
		s.cmdAuth(arg)
	case "":
		s.reply(codeSyntax, "5.5.2", "Error: empty command")
	default:
		s.reply(codeSyntax, "5.5.2", "Error: command not recognized")
	}
}

// tooMuchJunk counts the commands that move no mail forward (NOOP, RSET,
// VRFY, HELP; Postfix's smtpd_junk_command_limit counts NOOP, VRFY, ETRN
// and RSET) and, once there are more than MaxJunkCommands since the start
// or the last delivered message, answers 421 4.7.0 instead of running the
// command and ends the session, so that a client cannot hold the
// connection for ever with them. It reports whether it did.
func (s *session) tooMuchJunk(verb string) bool {
	switch verb {
	case "NOOP", "RSET", "VRFY", "HELP":
	default:
		return false
	}
	s.junk++
	max := s.srv.maxJunkCommands()
	if max == 0 || s.junk <= max {
		return false
	}
	s.log.Warn("too many junk commands", "limit", max)
	// RFC 5321 §3.8: the server may close with 421 when it must.
	s.replyf(codeUnavailable, "4.7.0", "%s Too many junk commands, closing connection (conn %s)", s.host, s.info.ID)
	s.closing = true
	return true
}

// hasControl reports whether line holds a control character (RFC 5234
// CTL: %x00-1F and %x7F) other than HTAB. The CRLF that ended the line is
// not part of it; a CR left inside is a bare CR.
func hasControl(line []byte) bool {
	for _, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// endTransaction abandons the current mail transaction, if any.
func (s *session) endTransaction() {
	if s.bdat != nil {
		s.bdat.abort(errTransactionAborted)
		s.bdat = nil
	}
	s.env = nil
	s.bdatStale = false
}

var errTransactionAborted = errors.New("smtp: transaction aborted")
