package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// cmdHelo handles HELO and EHLO (RFC 5321 §4.1.1.1).
func (s *session) cmdHelo(arg string, esmtp bool) {
	name := strings.TrimSpace(arg)
	if name == "" {
		s.reply(codeParamSyntax, "5.5.4", "Syntax: HELO/EHLO hostname")
		return
	}
	if s.refusedBy("helo", s.policy(StageHelo, printable(name), nil)) {
		return
	}
	// RFC 5321 §4.1.4: HELO/EHLO ends any transaction in progress.
	s.endTransaction()
	// The name goes into the greeting and the Received header: kept as
	// printable ASCII (a domain or address literal is, RFC 5321 §4.1.2),
	// other octets replaced by '?' as Postfix does.
	name = printable(name)
	s.helo, s.esmtp = name, esmtp
	greet := fmt.Sprintf("%s greets %s", s.host, name)
	if !esmtp {
		s.reply(codeOK, "", greet)
		return
	}
	lines := []string{
		greet,
		"PIPELINING", // RFC 2920
		fmt.Sprintf("SIZE %d", s.srv.maxMessageBytes()), // RFC 1870
		"8BITMIME",            // RFC 6152
		"ENHANCEDSTATUSCODES", // RFC 2034
		"SMTPUTF8",            // RFC 6531
		"CHUNKING",            // RFC 3030
		"BINARYMIME",          // RFC 3030 §3
	}
	if s.srv.TLSConfig != nil && s.tls == nil {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	if s.authAllowed() {
		lines = append(lines, "AUTH PLAIN LOGIN") // RFC 4954
	}
	s.replyLines(codeOK, lines)
}

// cmdMail handles MAIL FROM (RFC 5321 §4.1.1.2).
func (s *session) cmdMail(arg string) {
	switch {
	case s.helo == "" && s.srv.RequireHelo:
		// RFC 5321 §4.1.4 says a session starts with EHLO or HELO; like
		// Postfix (smtpd_helo_required = no) MAIL without one is accepted
		// unless RequireHelo is set.
		s.reply(codeBadSequence, "5.5.1", "Error: send HELO/EHLO first")
		return
	case s.env != nil:
		// RFC 5321 §4.1.4: MAIL inside a transaction is a bad sequence.
		s.reply(codeBadSequence, "5.5.1", "Error: nested MAIL command")
		return
	case s.srv.RequireAuth && s.authUser == "":
		s.reply(codeAuthRequired, "5.7.0", "Authentication required")
		return
	}
	from, nonASCII, params, err := parsePathArg(arg, "FROM:")
	if err != nil {
		switch {
		case errors.Is(err, errPathTooLong):
			s.reply(codeParamSyntax, "5.1.3", "Error: path too long (256 octets at most)")
		case errors.Is(err, errParamSyntax):
			s.reply(codeParamSyntax, "5.5.4", "Syntax error in parameters")
		default:
			s.reply(codeParamSyntax, "5.1.7", "Syntax: MAIL FROM:<address>")
		}
		return
	}
	env := &Envelope{
		Conn:     s.info,
		Helo:     s.helo,
		ESMTP:    s.esmtp,
		TLS:      s.tls,
		AuthUser: s.authUser,
		From:     from,
		Body:     "7BIT",
	}
	if len(params) > 0 && !s.esmtp {
		// Service extensions exist only after EHLO (RFC 5321 §4.1.1.1).
		s.reply(codeParamsUnknown, "5.5.4", "Parameters not supported without EHLO")
		return
	}
	for _, p := range params {
		switch p.Key {
		case "SIZE":
			n, ok := parseSize(p.Value)
			if !ok || !p.Set {
				s.reply(codeParamSyntax, "5.5.4", "Bad SIZE parameter")
				return
			}
			// RFC 1870 §6.1: refuse a declared size over the limit with 552.
			if n > s.srv.maxMessageBytes() {
				s.reply(codeExceededStorage, "5.3.4", "Message size exceeds fixed limit")
				return
			}
			env.Size = n
		case "BODY":
			v := strings.ToUpper(p.Value)
			switch v {
			case "7BIT", "8BITMIME", "BINARYMIME":
				env.Body = v
			default:
				s.reply(codeParamSyntax, "5.5.4", "Bad BODY parameter")
				return
			}
		case "SMTPUTF8":
			if p.Set {
				s.reply(codeParamSyntax, "5.5.4", "SMTPUTF8 takes no value")
				return
			}
			env.SMTPUTF8 = true
		case "AUTH":
			// RFC 4954 §5: the AUTH= parameter may be ignored; it is only
			// checked for being present with a value.
			if !p.Set {
				s.reply(codeParamSyntax, "5.5.4", "Bad AUTH parameter")
				return
			}
		default:
			// RFC 5321 §4.1.1.11: 555 for unrecognized parameters.
			s.reply(codeParamsUnknown, "5.5.4", "Unsupported parameter "+p.Key)
			return
		}
	}
	// RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8.
	if nonASCII && !env.SMTPUTF8 {
		s.reply(codeMailboxName, "5.6.7", "Non-ASCII address requires SMTPUTF8")
		return
	}
	if s.refusedBy("mail", s.policy(StageMail, from, env)) {
		return
	}
	if err := s.srv.Backend.Mail(s.ctx, env); err != nil {
		s.backendError("mail", err)
		return
	}
	s.env = env
	s.bdatStale = false
	s.reply(codeOK, "2.1.0", "Ok")
}

// cmdRcpt handles RCPT TO (RFC 5321 §4.1.1.3).
func (s *session) cmdRcpt(arg string) {
	if s.env == nil {
		s.reply(codeBadSequence, "5.5.1", "Error: need MAIL command")
		return
	}
	if s.bdat != nil || s.bdatStale {
		// RFC 3030 §2: after the first BDAT only BDAT (or RSET) may follow.
		s.reply(codeBadSequence, "5.5.1", "Error: RCPT after BDAT")
		return
	}
	var (
		to       string
		nonASCII bool
		params   []param
		err      error
	)
	if len(arg) >= 3 && strings.EqualFold(arg[:3], "TO:") {
		if rest, ok := isPostmaster(arg[3:]); ok {
			// RFC 5321 §4.1.1.3: <Postmaster> without a domain.
			to = "postmaster"
			params, err = parseParams(rest)
		} else {
			to, nonASCII, params, err = parsePathArg(arg, "TO:")
			if err == nil && to == "" {
				err = errPathSyntax // no null forward-path
			}
		}
	} else {
		err = errPathSyntax
	}
	if err != nil {
		switch {
		case errors.Is(err, errPathTooLong):
			s.reply(codeParamSyntax, "5.1.3", "Error: path too long (256 octets at most)")
		case errors.Is(err, errParamSyntax):
			s.reply(codeParamSyntax, "5.5.4", "Syntax error in parameters")
		default:
			s.reply(codeParamSyntax, "5.1.3", "Syntax: RCPT TO:<address>")
		}
		return
	}
	if len(params) > 0 {
		// No RCPT parameters are supported (no DSN).
		s.reply(codeParamsUnknown, "5.5.4", "Unsupported parameter "+params[0].Key)
		return
	}
	if nonASCII && !s.env.SMTPUTF8 {
		s.reply(codeMailboxName, "5.6.7", "Non-ASCII address requires SMTPUTF8")
		return
	}
	// RFC 5321 §4.5.3.1.10: refuse the excess recipient with 452 and keep
	// the transaction.
	if len(s.env.To) >= s.srv.maxRecipients() {
		s.reply(codeInsufficient, "4.5.3", s.withID("Error: too many recipients"))
		return
	}
	if s.refusedBy("rcpt", s.policy(StageRcpt, to, s.env)) {
		return
	}
	if err := s.srv.Backend.Rcpt(s.ctx, s.env, to); err != nil {
		s.backendError("rcpt", err)
		return
	}
	s.env.To = append(s.env.To, to)
	s.reply(codeOK, "2.1.5", "Ok")
}

// cmdRset handles RSET (RFC 5321 §4.1.1.5): the transaction ends, the
// HELO/EHLO state stays.
func (s *session) cmdRset(arg string) {
	if strings.TrimSpace(arg) != "" {
		s.reply(codeParamSyntax, "5.5.4", "Syntax: RSET")
		return
	}
	s.endTransaction()
	s.reply(codeOK, "2.0.0", "Ok")
}

// cmdVrfy handles VRFY (RFC 5321 §3.5.3): 252, never revealing whether a
// user exists.
func (s *session) cmdVrfy(arg string) {
	if strings.TrimSpace(arg) == "" {
		s.reply(codeParamSyntax, "5.5.4", "Syntax: VRFY address")
		return
	}
	s.reply(codeCannotVerify, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
}

// cmdStartTLS handles STARTTLS (RFC 3207).
func (s *session) cmdStartTLS(arg string) {
	switch {
	case s.tls != nil:
		// RFC 3207 §4: a client must not start TLS twice. 454 would say
		// "temporary, try again"; this is a bad sequence (RFC 5321 §4.2.4).
		s.reply(codeBadSequence, "5.5.1", "Error: TLS already active")
		return
	case s.srv.TLSConfig == nil:
		// Not offered in EHLO: not implemented here (RFC 5321 §4.2.4), not
		// the temporary 454 of RFC 3207 §4.
		s.reply(codeNotImplemented, "5.5.1", "Error: STARTTLS not available")
		return
	case strings.TrimSpace(arg) != "":
		s.reply(codeParamSyntax, "5.5.4", "Syntax: STARTTLS")
		return
	}
	s.reply(codeReady, "2.0.0", "Ready to start TLS")
	if err := s.conn.Flush(); err != nil {
		s.closing = true
		return
	}
	tc := tls.Server(s.conn.NetConn(), s.srv.TLSConfig)
	if err := s.handshake(tc); err != nil {
		s.log.Info("starttls handshake failed", "err", err)
		s.closing = true
		return
	}
	// RFC 3207 §4.2: input pipelined in plaintext after STARTTLS is
	// discarded (Upgrade drops the buffer), and the session starts over:
	// no HELO, no transaction, no authentication.
	s.conn.Upgrade(tc)
	s.endTransaction()
	s.helo, s.esmtp, s.authUser = "", false, ""
}

// handshake completes a TLS handshake within CommandTimeout and records
// the connection state.
func (s *session) handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.commandTimeout())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	st := tc.ConnectionState()
	s.tls = &st
	s.log.Info("tls", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// backendError answers an error from a Backend method: *Error as it is,
// anything else as a generic 451 with the cause in the log.
func (s *session) backendError(op string, err error) {
	var e *Error
	if errors.As(err, &e) {
		s.log.Info(op+" refused", "reply", e.Error())
		s.replyError(e)
		return
	}
	s.log.Error(op+" failed", "err", err)
	s.reply(codeLocalError, "4.3.0", s.withID("Error: local error in processing"))
}

// cmdData handles DATA (RFC 5321 §4.1.1.4).
func (s *session) cmdData(arg string) {
	switch {
	case strings.TrimSpace(arg) != "":
		s.reply(codeParamSyntax, "5.5.4", "Syntax: DATA")
		return
	case s.env == nil || len(s.env.To) == 0:
		// Chosen: 503 both without MAIL and without accepted RCPT (as
		// Postfix: "need RCPT command").
		s.reply(codeBadSequence, "5.5.1", "Error: need RCPT command")
		return
	case s.bdat != nil || s.bdatStale:
		// RFC 3030 §2: DATA and BDAT do not mix in one transaction.
		s.reply(codeBadSequence, "5.5.1", "Error: DATA after BDAT")
		return
	case s.env.Body == "BINARYMIME":
		// RFC 3030 §3: BINARYMIME must be sent with BDAT.
		s.reply(codeBadSequence, "5.5.1", "Error: BODY=BINARYMIME requires BDAT")
		return
	}
	if s.refusedBy("data", s.policy(StageData, "", s.env)) {
		// The transaction ends with DATA's reply (RFC 5321 §4.1.1.4).
		s.endTransaction()
		return
	}
	s.conn.W.WriteString("354 End data with <CR><LF>.<CR><LF>\r\n")
	if err := s.conn.Flush(); err != nil {
		s.closing = true
		return
	}
	env := s.env
	s.env = nil // RFC 5321 §4.1.1.4: the transaction ends with DATA's reply.

	// RFC 5321 §4.5.3.2.5: a timeout per data block.
	s.conn.SetTimeouts(s.srv.dataTimeout(), s.srv.writeTimeout())
	defer s.conn.SetTimeouts(s.srv.commandTimeout(), s.srv.writeTimeout())

	dl := s.startDataDeadline()
	defer dl.stop()
	dr := newDataReader(s.conn.R, s.srv.maxMessageBytes())
	dr.dl = dl
	dr.setPolicy(s.srv.BareNewline)
	r, pr := s.messageReader(dr, env)
	id, err := s.srv.Backend.Data(s.ctx, env, r)
	// Whatever the backend read, the client's data runs to CRLF.CRLF.
	if derr := dr.drain(); derr != nil {
		if err == nil {
			s.log.Error("backend accepted a message before its end", "id", id)
		}
		s.dataReadFailed(dl, "data", derr)
		s.closing = true
		return
	}
	if e := dr.refused(); e != nil {
		err = e // the backend stored nothing: its reader failed with e
	}
	if v := pr.result(); v != nil {
		if errors.Is(v, ErrDrop) {
			s.drop("message")
			return
		}
		err = v // the backend stored nothing: its reader failed with v
	}
	s.finishMessage(env, id, err, dr.tooBig, dr.n)
}

// finishMessage answers the end of a message (DATA or BDAT LAST).
func (s *session) finishMessage(env *Envelope, id string, err error, tooBig bool, size int64) {
	defer func() { s.srv.observer().MessageReply(s.lastCode, size) }()
	switch {
	case tooBig:
		if err == nil {
			s.log.Error("backend accepted a message over the size limit", "id", id)
		}
		// RFC 5321 §4.2.3, RFC 1870 §6.3: 552 for a message over the limit;
		// the backend stored nothing.
		s.log.Info("message refused: too big", "limit", s.srv.maxMessageBytes(), "rcpts", len(env.To))
		s.reply(codeExceededStorage, "5.3.4", "Message size exceeds fixed limit")
	case err != nil:
		s.backendError("data", err)
	default:
		s.junk = 0 // a delivered message resets the junk count, as in Postfix
		s.reply(codeOK, "2.0.0", "Ok: queued as "+id)
		// The client waits for this reply alone: send it before the log
		// line is written (a write error shows again at the next flush).
		_ = s.conn.FlushIfIdle()
		s.log.Info("message queued", "id", id, "size", size, "rcpts", len(env.To), "from", env.From, "chunked", env.Chunked)
	}
}
