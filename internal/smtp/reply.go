package smtp

import (
	"fmt"
	"strconv"
	"strings"
)

// Reply codes used by the engine (RFC 5321 §4.2.2, §4.2.3).
const (
	codeHelp            = 214
	codeReady           = 220
	codeClosing         = 221
	codeAuthOK          = 235
	codeOK              = 250
	codeCannotVerify    = 252
	codeAuthChallenge   = 334
	codeStartData       = 354
	codeUnavailable     = 421
	codeLocalError      = 451
	codeInsufficient    = 452
	codeTempAuthFailure = 454
	codeSyntax          = 500
	codeParamSyntax     = 501
	codeNotImplemented  = 502
	codeBadSequence     = 503
	codeParamNotImpl    = 504
	codeAuthRequired    = 530
	codeAuthInvalid     = 535
	codeEncryptRequired = 538
	codeExceededStorage = 552
	codeMailboxName     = 553
	codeFailed          = 554
	codeParamsUnknown   = 555
)

// reply queues one reply line. Replies leave in the main loop (FlushIfIdle)
// or where a command must flush before it reads more (354, 334, STARTTLS).
// enhanced is the RFC 3463 code; RFC 2034 §3 asks for it on every reply
// after the greeting except the first line of the HELO/EHLO reply.
func (s *session) reply(code int, enhanced, text string) {
	w := s.conn.W
	w.WriteString(strconv.Itoa(code))
	w.WriteByte(' ')
	if enhanced != "" {
		w.WriteString(enhanced)
		w.WriteByte(' ')
	}
	w.WriteString(printable(text))
	// Every error reply names the connection, so that a user can find its
	// log lines (CONVENTIONS.md, Logging).
	if code >= 400 && !strings.Contains(text, "(conn ") {
		w.WriteString(" (conn ")
		w.WriteString(s.info.ID)
		w.WriteByte(')')
	}
	w.WriteString("\r\n")
	s.count(code)
}

// replyf is reply with a formatted text.
func (s *session) replyf(code int, enhanced, format string, args ...any) {
	s.reply(code, enhanced, fmt.Sprintf(format, args...))
}

// replyLines queues a multiline reply (RFC 5321 §4.2.1): every line but the
// last has a hyphen after the code.
func (s *session) replyLines(code int, lines []string) {
	w := s.conn.W
	for i, l := range lines {
		w.WriteString(strconv.Itoa(code))
		if i < len(lines)-1 {
			w.WriteByte('-')
		} else {
			w.WriteByte(' ')
		}
		w.WriteString(printable(l))
		w.WriteString("\r\n")
	}
	s.count(code)
}

// replyError sends e as it is. A 421 also ends the session: RFC 5321 §3.8
// says the server closes the channel after it.
func (s *session) replyError(e *Error) {
	s.reply(e.Code, e.Enhanced, e.Message)
	if e.Code == codeUnavailable {
		s.closing = true
	}
}

// count records a protocol error: every 5xx reply counts toward MaxErrors
// (as Postfix's smtpd_hard_error_limit), except while pipelined BDAT chunks
// of a failed transaction are being discarded (RFC 3030 §2 says the server
// must accept those).
func (s *session) count(code int) {
	s.lastCode = code
	if code >= 500 && !s.noCount {
		s.errors++
	}
}

// printable returns text with every octet outside printable ASCII (SP
// through '~') replaced by '?'. Reply text is ASCII (RFC 5321 §4.2.1,
// textstring); texts that quote the client (a HELO name, a backend's
// refusal naming a domain) must not carry its NULs, CRs, controls or 8-bit
// octets back, nor break the reply's CRLF framing.
func printable(text string) string {
	for i := 0; i < len(text); i++ {
		if c := text[i]; c < 0x20 || c > 0x7e {
			b := []byte(text)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] > 0x7e {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return text
}

// withID appends the connection id to a reply text so that an operator can
// find the session's log lines.
func (s *session) withID(text string) string {
	return text + " (conn " + s.info.ID + ")"
}
