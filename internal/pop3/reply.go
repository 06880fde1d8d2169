package pop3

import (
	"fmt"
)

// Extended response codes (RFC 2449 §8, RFC 3206). They appear in brackets
// right after "-ERR" and tell a client whether retrying can help.
const (
	// codeInUse: the maildrop is locked by another session (RFC 2449 §8.1.2).
	codeInUse = "IN-USE"
	// codeAuth: the failure is about the credentials or the way they were
	// presented; retrying with the same ones will not help (RFC 3206 §5).
	codeAuth = "AUTH"
	// codeSysTemp: a temporary server-side problem (RFC 3206 §4).
	codeSysTemp = "SYS/TEMP"
)

// Reply texts that more than one command uses.
const (
	msgNoSuchMessage  = "no such message"
	msgSyntax         = "syntax error"
	msgPlainRefused   = "Plaintext authentication disallowed on non-secure connections"
	msgAuthFailed     = "Authentication failed"
	msgInUse          = "Mailbox is locked by another session"
	msgShuttingDown   = "server shutting down"
	msgTooManyConns   = "too many connections"
	msgTooManyErrors  = "too many errors, closing connection"
	msgLineTooLong    = "line too long"
	msgUnknownCommand = "unknown command"
)

// ok writes a single-line positive reply: "+OK text" (RFC 1939 §3).
func (s *session) ok(format string, args ...any) {
	s.c.W.WriteString("+OK")
	if format != "" {
		s.c.W.WriteByte(' ')
		fmt.Fprintf(s.c.W, format, args...)
	}
	s.c.W.WriteString("\r\n")
}

// fail writes a negative reply: "-ERR text", or "-ERR [CODE] text" when code
// is set (RFC 2449 §8).
func (s *session) fail(code, format string, args ...any) {
	s.c.W.WriteString("-ERR ")
	if code != "" {
		s.c.W.WriteString("[" + code + "] ")
	}
	fmt.Fprintf(s.c.W, format, args...)
	s.c.W.WriteString("\r\n")
}

// failTemp writes "-ERR [SYS/TEMP] text (conn ID)": a server-side problem
// whose cause is in the log under the connection id echoed here.
func (s *session) failTemp(text string) {
	s.fail(codeSysTemp, "%s (conn %s)", text, s.id)
}

// line writes one line of a multi-line reply (RFC 1939 §3). The caller makes
// sure it does not begin with '.' or stuffs it.
func (s *session) line(format string, args ...any) {
	fmt.Fprintf(s.c.W, format, args...)
	s.c.W.WriteString("\r\n")
}

// end terminates a multi-line reply with a line holding a single '.'.
func (s *session) end() {
	s.c.W.WriteString(".\r\n")
}

// badCommand answers a command that is unknown, malformed or not valid in
// the current state, and counts it toward MaxErrors.
func (s *session) badCommand(text string) {
	s.errors++
	s.fail("", "%s", text)
}
