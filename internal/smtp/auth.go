package smtp

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"postoffice/internal/textio"
)

// authLineLength bounds one SASL response line: RFC 4954 §4 asks servers
// to accept at least 12288 octets.
const authLineLength = 12288

// authAllowed reports whether AUTH may be used now: only over TLS, from a
// local client, or when insecure auth is allowed (RFC 4954 §4: plaintext
// mechanisms need an encrypted channel).
func (s *session) authAllowed() bool {
	return s.srv.AuthEnabled && (s.tls != nil || s.srv.AllowInsecureAuth || s.srv.isLocal(s.info.RemoteIP))
}

// cmdAuth handles AUTH (RFC 4954) with the mechanisms PLAIN (RFC 4616) and
// LOGIN.
func (s *session) cmdAuth(arg string) {
	mech, initial, hasInitial := strings.Cut(strings.TrimSpace(arg), " ")
	initial = strings.TrimSpace(initial)
	switch {
	case !s.srv.AuthEnabled:
		s.reply(codeNotImplemented, "5.5.1", "Error: authentication not enabled")
		return
	case s.helo == "":
		s.reply(codeBadSequence, "5.5.1", "Error: send EHLO first")
		return
	case s.authUser != "":
		// RFC 4954 §4: AUTH after a successful AUTH is refused with 503.
		s.reply(codeBadSequence, "5.5.1", "Error: already authenticated")
		return
	case s.env != nil:
		// RFC 4954 §4: AUTH is not permitted during a mail transaction.
		s.reply(codeBadSequence, "5.5.1", "Error: MAIL transaction in progress")
		return
	case !s.authAllowed():
		s.reply(codeEncryptRequired, "5.7.11", "Encryption required for requested authentication mechanism")
		return
	case mech == "":
		s.reply(codeParamSyntax, "5.5.4", "Syntax: AUTH mechanism")
		return
	}
	switch strings.ToUpper(mech) {
	case "PLAIN":
		s.authPlain(initial, hasInitial)
	case "LOGIN":
		s.authLogin(initial, hasInitial)
	default:
		s.reply(codeParamNotImpl, "5.5.4", "Unsupported authentication mechanism")
	}
}

// authPlain runs SASL PLAIN (RFC 4616) with go-sasl's server.
func (s *session) authPlain(initial string, hasInitial bool) {
	var (
		called  bool
		user    string
		authErr error
	)
	server := sasl.NewPlainServer(func(identity, username, password string) error {
		called, user = true, username
		if identity != "" && identity != username {
			// Acting as another user is not supported.
			authErr = ErrAuthFailed
		} else {
			authErr = s.srv.Backend.Authenticate(s.ctx, s.info, username, password)
		}
		return authErr
	})
	var resp []byte // nil: no initial response, server sends "334 "
	if hasInitial {
		var ok bool
		if resp, ok = s.decodeAuth(initial); !ok {
			return
		}
	}
	for {
		challenge, done, err := server.Next(resp)
		if done || err != nil {
			break
		}
		var ok bool
		if resp, ok = s.authExchange(base64.StdEncoding.EncodeToString(challenge)); !ok {
			return
		}
	}
	if !called {
		s.reply(codeParamSyntax, "5.5.2", "Invalid authentication data")
		return
	}
	s.authResult("PLAIN", user, authErr)
}

// authLogin runs the LOGIN mechanism: two base64 prompts, "Username:" and
// "Password:" (draft-murchison-sasl-login). An initial response is taken as
// the username.
func (s *session) authLogin(initial string, hasInitial bool) {
	var (
		user []byte
		ok   bool
	)
	if hasInitial {
		user, ok = s.decodeAuth(initial)
	} else {
		user, ok = s.authExchange("VXNlcm5hbWU6") // "Username:"
	}
	if !ok {
		return
	}
	pass, ok := s.authExchange("UGFzc3dvcmQ6") // "Password:"
	if !ok {
		return
	}
	err := s.srv.Backend.Authenticate(s.ctx, s.info, string(user), string(pass))
	s.authResult("LOGIN", string(user), err)
}

// authExchange sends a 334 challenge and reads and decodes the response.
// It reports false when the exchange is over (cancelled, malformed, or the
// connection failed), the reply having been queued.
func (s *session) authExchange(challenge string) ([]byte, bool) {
	s.conn.W.WriteString("334 " + challenge + "\r\n")
	if err := s.conn.Flush(); err != nil {
		s.closing = true
		return nil, false
	}
	// As for a command line (RFC 5321 §4.5.3.2.7), the whole response must
	// arrive within the command timeout: trickled octets do not extend it.
	s.guard.SetReadLimit(time.Now().Add(s.srv.commandTimeout()))
	line, err := s.conn.ReadLine(max(authLineLength, s.srv.maxLineLength()))
	s.guard.SetReadLimit(time.Time{})
	switch {
	case errors.Is(err, textio.ErrLineTooLong):
		s.reply(codeSyntax, "5.5.6", "Error: authentication line too long")
		return nil, false
	case err != nil:
		s.readFailed("auth response", err)
		s.closing = true
		return nil, false
	}
	return s.decodeAuth(string(line))
}

// decodeAuth decodes a base64 client response. "*" cancels the exchange
// (RFC 4954 §4: 501); "=" is an empty initial response.
func (s *session) decodeAuth(v string) ([]byte, bool) {
	switch v {
	case "*":
		s.reply(codeParamSyntax, "5.0.0", "Authentication cancelled")
		return nil, false
	case "=":
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		s.reply(codeParamSyntax, "5.5.2", "Invalid base64 data")
		return nil, false
	}
	return b, true
}

// authResult answers the outcome of Backend.Authenticate. The password is
// never logged.
func (s *session) authResult(mech, user string, err error) {
	var e *Error
	switch {
	case err == nil:
		s.authUser = user
		s.log.Info("auth succeeded", "mech", mech, "user", user)
		s.reply(codeAuthOK, "2.7.0", "Authentication successful")
	case errors.Is(err, ErrAuthFailed):
		s.log.Warn("auth failed", "mech", mech, "user", user)
		s.reply(codeAuthInvalid, "5.7.8", "Authentication credentials invalid")
	case errors.As(err, &e):
		s.log.Warn("auth refused", "mech", mech, "user", user, "reply", e.Error())
		s.replyError(e)
	default:
		s.log.Error("auth error", "mech", mech, "user", user, "err", err)
		s.reply(codeTempAuthFailure, "4.7.0", s.withID("Temporary authentication failure"))
	}
}
