package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"time"

	"postoffice/internal/textio"
)

// noArgs answers a syntax error and returns false if cmd has arguments.
func (ss *session) noArgs(cmd command) bool {
	if len(cmd.Args) != 0 {
		ss.badCommand(msgSyntax)
		return false
	}
	return true
}

// cmdUser handles USER name (RFC 1939 §7).
func (ss *session) cmdUser(cmd command) {
	if len(cmd.Args) != 1 {
		ss.badCommand(msgSyntax)
		return
	}
	if !ss.plaintextAllowed() {
		// RFC 3206 §5: [AUTH] tells the client that retrying the same
		// way will not help; it has to use STLS first.
		ss.fail(codeAuth, msgPlainRefused)
		return
	}
	ss.user = cmd.Args[0]
	ss.haveUser = true
	ss.ok("send PASS")
}

// cmdPass handles PASS string (RFC 1939 §7). afterUser tells whether the
// previous command was a successful USER. The password is the whole rest of
// the line: it may contain spaces.
func (ss *session) cmdPass(cmd command, afterUser bool) {
	if !afterUser {
		ss.badCommand("PASS must follow USER")
		return
	}
	if cmd.Rest == "" {
		ss.badCommand(msgSyntax)
		return
	}
	if !ss.plaintextAllowed() {
		ss.fail(codeAuth, msgPlainRefused)
		return
	}
	ss.login(ss.user, cmd.Rest, "USER")
}

// cmdAuth handles AUTH (RFC 5034 §4). Without an argument it lists the
// mechanisms, the form clients used before CAPA existed (RFC 1734). PLAIN is
// the only mechanism, offered where plaintext login is allowed.
func (ss *session) cmdAuth(cmd command) {
	if len(cmd.Args) == 0 {
		ss.ok("")
		if ss.plaintextAllowed() {
			ss.line("PLAIN")
		}
		ss.end()
		return
	}
	if len(cmd.Args) > 2 {
		ss.badCommand(msgSyntax)
		return
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") {
		ss.badCommand("unsupported authentication mechanism")
		return
	}
	if !ss.plaintextAllowed() {
		ss.fail(codeAuth, msgPlainRefused)
		return
	}
	var resp string
	if len(cmd.Args) == 2 {
		// RFC 5034 §4: an initial response of "=" is an empty response.
		resp = cmd.Args[1]
		if resp == "=" {
			resp = ""
		}
	} else {
		// RFC 5034 §4: an empty server challenge is "+ " then CRLF.
		ss.c.W.WriteString("+ \r\n")
		if err := ss.c.Flush(); err != nil {
			ss.quit = true
			return
		}
		line, err := ss.c.ReadLine(saslLineLength)
		switch {
		case err == nil:
		case errors.Is(err, textio.ErrLineTooLong):
			ss.badCommand("authentication response too long")
			return
		default:
			ss.readFailed(err)
			ss.quit = true
			return
		}
		// RFC 5034 §4: a response of "*" cancels the exchange and the
		// server MUST reject the AUTH command with -ERR.
		if string(line) == "*" {
			ss.fail("", "authentication cancelled")
			return
		}
		resp = string(line)
	}
	user, pass, err := decodePlain(resp)
	switch {
	case errors.Is(err, errBadBase64):
		ss.badCommand("invalid base64 data")
		return
	case err != nil:
		ss.authFailed(user, "PLAIN", err)
		return
	}
	ss.login(user, pass, "PLAIN")
}

// login asks the backend to authenticate and, on success, enters the
// TRANSACTION state with the maildrop snapshot (RFC 1939 §4).
func (ss *session) login(user, pass, mech string) {
	// The backend may sleep after a failure: send earlier replies first.
	if err := ss.c.Flush(); err != nil {
		ss.quit = true
		return
	}
	ctx, cancel := context.WithDeadline(ss.srv.lc.Context(), ss.loginDeadline)
	drop, err := ss.srv.Backend.Login(ctx, ss.info, user, pass)
	cancel()
	if err == nil && drop == nil {
		err = errors.New("backend returned no maildrop")
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrAuthFailed):
		ss.authFailed(user, mech, err)
		return
	case errors.Is(err, ErrInUse):
		// RFC 2449 §8.1.2: [IN-USE] says another session holds the lock.
		ss.log.Info("pop3 login refused: maildrop in use", "user", user)
		ss.errors++
		ss.fail(codeInUse, msgInUse)
		return
	case errors.Is(err, ErrBlocked):
		ss.log.Warn("pop3 login refused: client blocked", "user", user)
		ss.fail(codeAuth, "too many failed logins, try again later")
		ss.quit = true
		return
	default:
		ss.log.Error("pop3 login error", "user", user, "err", err)
		ss.errors++
		ss.failTemp("cannot open maildrop, try again later")
		return
	}
	ss.drop = drop
	ss.username = user
	ss.msgs = drop.Messages()
	ss.deleted = make([]bool, len(ss.msgs))
	ss.state = stateTransaction
	ss.guard.SetReadLimit(time.Time{})
	n, size := ss.totals()
	ss.log.Info("pop3 login", "user", user, "mech", mech, "messages", n, "octets", size)
	ss.ok("maildrop locked and ready, %d messages (%d octets)", n, size)
}

// authFailed answers a failed login and closes the connection after
// MaxAuthFailures of them.
func (ss *session) authFailed(user, mech string, err error) {
	ss.authFailures++
	ss.log.Warn("pop3 login failed", "user", user, "mech", mech, "failures", ss.authFailures, "err", err)
	ss.fail(codeAuth, msgAuthFailed)
	if ss.authFailures >= ss.srv.maxAuthFailures() {
		ss.log.Warn("pop3 too many failed logins, closing", "failures", ss.authFailures)
		ss.quit = true
	}
}

// cmdStls handles STLS (RFC 2595 §4), valid only in the AUTHORIZATION state
// of a connection that is not yet TLS.
func (ss *session) cmdStls(cmd command) {
	if !ss.noArgs(cmd) {
		return
	}
	if ss.srv.TLSConfig == nil {
		ss.badCommand("STLS not available")
		return
	}
	if ss.info.TLS {
		ss.badCommand("already using TLS")
		return
	}
	ss.ok("Begin TLS negotiation")
	if err := ss.c.Flush(); err != nil {
		ss.quit = true
		return
	}
	if ss.c.Pending() {
		ss.log.Warn("pop3 discarding plaintext pipelined after STLS")
	}
	// RFC 2595 §4: nothing the client sent before the TLS negotiation
	// completes may be acted on; Upgrade drops buffered input.
	tc := tls.Server(ss.c.NetConn(), ss.srv.TLSConfig)
	ss.c.Upgrade(tc)
	if err := ss.handshake(tc); err != nil {
		ss.log.Info("pop3 tls handshake failed", "err", err)
		ss.quit = true
		return
	}
	ss.user = ""
}

// cmdCapa handles CAPA (RFC 2449 §5). USER and SASL are listed only where
// plaintext login is allowed on this connection, STLS only on a plain
// connection with TLS configured. The list is the same in both states:
// RFC 2449 §5 says capabilities available in the AUTHORIZATION state MUST be
// announced in both states.
func (ss *session) cmdCapa(cmd command) {
	if !ss.noArgs(cmd) {
		return
	}
	ss.ok("Capability list follows")
	ss.line("TOP")
	ss.line("UIDL")
	ss.line("RESP-CODES")
	ss.line("AUTH-RESP-CODE")
	ss.line("PIPELINING")
	if ss.plaintextAllowed() {
		ss.line("USER")
		ss.line("SASL PLAIN")
	}
	if ss.srv.TLSConfig != nil && !ss.info.TLS {
		ss.line("STLS")
	}
	ss.line("IMPLEMENTATION Postoffice")
	ss.end()
}

// cmdQuit handles QUIT. In the AUTHORIZATION state it just ends the session
// (RFC 1939 §4). In the TRANSACTION state it enters UPDATE (RFC 1939 §6):
// the DELE'd messages are removed durably before +OK; if that fails the
// reply is -ERR and nothing is claimed removed. Either way the lock is
// released before the reply, so the client may log in again at once.
func (ss *session) cmdQuit(cmd command) {
	ss.quit = true
	if ss.state == stateAuthorization {
		ss.ok("bye")
		return
	}
	var indexes []int
	for i, d := range ss.deleted {
		if d {
			indexes = append(indexes, i)
		}
	}
	// Committing may take a while (fsync): send earlier replies first.
	if err := ss.c.Flush(); err != nil {
		return
	}
	if len(indexes) > 0 {
		if err := ss.drop.Commit(indexes); err != nil {
			ss.log.Error("pop3 commit failed", "user", ss.username, "deleted", len(indexes), "err", err)
			ss.releaseMaildrop()
			ss.fail(codeSysTemp, "some deleted messages not removed (conn %s)", ss.id)
			return
		}
	}
	ss.releaseMaildrop()
	ss.log.Info("pop3 logout", "user", ss.username, "retrieved", ss.retrieved, "deleted", len(indexes))
	ss.ok("bye")
}

// totals returns the number and total size of the messages not marked
// deleted (RFC 1939 §5: deleted messages are not counted).
func (ss *session) totals() (n int, size int64) {
	for i, m := range ss.msgs {
		if !ss.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

// msgArg parses a message-number argument and answers -ERR if it names no
// message or a deleted one (RFC 1939 §5). It returns the 0-based index.
func (ss *session) msgArg(arg string) (int, bool) {
	i, ok := parseMsgNum(arg, len(ss.msgs))
	if !ok {
		ss.fail("", msgNoSuchMessage)
		return 0, false
	}
	if ss.deleted[i] {
		ss.fail("", "message %d already deleted", i+1)
		return 0, false
	}
	return i, true
}

// cmdStat handles STAT (RFC 1939 §5): "+OK count octets".
func (ss *session) cmdStat(cmd command) {
	if !ss.noArgs(cmd) {
		return
	}
	n, size := ss.totals()
	ss.ok("%d %d", n, size)
}

// cmdList handles LIST [msg] (RFC 1939 §5).
func (ss *session) cmdList(cmd command) {
	switch len(cmd.Args) {
	case 0:
		n, size := ss.totals()
		ss.ok("%d messages (%d octets)", n, size)
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				ss.line("%d %d", i+1, m.Size)
			}
		}
		ss.end()
	case 1:
		if i, ok := ss.msgArg(cmd.Args[0]); ok {
			ss.ok("%d %d", i+1, ss.msgs[i].Size)
		}
	default:
		ss.badCommand(msgSyntax)
	}
}

// cmdUidl handles UIDL [msg] (RFC 1939 §7).
func (ss *session) cmdUidl(cmd command) {
	switch len(cmd.Args) {
	case 0:
		ss.ok("")
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				ss.line("%d %s", i+1, m.UID)
			}
		}
		ss.end()
	case 1:
		if i, ok := ss.msgArg(cmd.Args[0]); ok {
			ss.ok("%d %s", i+1, ss.msgs[i].UID)
		}
	default:
		ss.badCommand(msgSyntax)
	}
}

// cmdRetr handles RETR msg (RFC 1939 §5).
func (ss *session) cmdRetr(cmd command) {
	if len(cmd.Args) != 1 {
		ss.badCommand(msgSyntax)
		return
	}
	i, ok := ss.msgArg(cmd.Args[0])
	if !ok {
		return
	}
	if ss.sendMessage(i, -1, "%d octets", ss.msgs[i].Size) {
		ss.retrieved++
		ss.srv.observer().Retrieved(ss.msgs[i].Size)
		if r, ok := ss.drop.(Retriever); ok {
			if err := r.Retrieved(i); err != nil {
				ss.log.Warn("pop3 marking a retrieved message seen failed", "user", ss.username, "msg", i+1, "uid", ss.msgs[i].UID, "err", err)
			}
		}
	}
}

// cmdTop handles TOP msg n (RFC 1939 §7): the headers, the blank line and
// the first n lines of the body.
func (ss *session) cmdTop(cmd command) {
	if len(cmd.Args) != 2 {
		ss.badCommand(msgSyntax)
		return
	}
	i, ok := ss.msgArg(cmd.Args[0])
	if !ok {
		return
	}
	n, ok := parseDecimal(cmd.Args[1])
	if !ok {
		ss.badCommand("invalid line count")
		return
	}
	ss.sendMessage(i, int64(n), "top of message follows")
}

// sendMessage opens message i and sends it as a multi-line reply, the whole
// of it or only bodyLines lines of the body (see writeDotStuffed). Once +OK
// has gone out a failure cannot be reported in-band, so the connection is
// closed. It reports whether the message was sent in full.
func (ss *session) sendMessage(i int, bodyLines int64, format string, args ...any) bool {
	rc, err := ss.drop.Open(i)
	if err != nil {
		ss.log.Error("pop3 open message failed", "user", ss.username, "msg", i+1, "uid", ss.msgs[i].UID, "err", err)
		ss.failTemp("cannot read message")
		return false
	}
	defer rc.Close()
	ss.ok(format, args...)
	n, err := writeDotStuffed(ss.c.W, rc, bodyLines)
	if err != nil {
		ss.log.Info("pop3 sending message failed", "msg", i+1, "uid", ss.msgs[i].UID, "err", err)
		ss.quit = true
		return false
	}
	if bodyLines < 0 && n != ss.msgs[i].Size {
		// The maildrop broke its contract; the client got what is there.
		ss.log.Warn("pop3 message size differs from listing", "msg", i+1, "uid", ss.msgs[i].UID, "listed", ss.msgs[i].Size, "sent", n)
	}
	return true
}

// cmdDele handles DELE msg (RFC 1939 §5). The message is only marked; it is
// removed in the UPDATE state (RFC 1939 §6).
func (ss *session) cmdDele(cmd command) {
	if len(cmd.Args) != 1 {
		ss.badCommand(msgSyntax)
		return
	}
	if i, ok := ss.msgArg(cmd.Args[0]); ok {
		ss.deleted[i] = true
		ss.ok("message %d deleted", i+1)
	}
}

// cmdNoop handles NOOP (RFC 1939 §5).
func (ss *session) cmdNoop(cmd command) {
	if ss.noArgs(cmd) {
		ss.ok("")
	}
}

// cmdRset handles RSET (RFC 1939 §5): every deletion mark is removed.
func (ss *session) cmdRset(cmd command) {
	if !ss.noArgs(cmd) {
		return
	}
	clear(ss.deleted)
	n, size := ss.totals()
	ss.ok("maildrop has %d messages (%d octets)", n, size)
}
