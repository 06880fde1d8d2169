// Package mailheader holds Postoffice's one rule for where the header of a
// stored message ends, shared by every reader of a message's header: POP3
// TOP, the web inbox, the CLI (and IMAP later).
//
// RFC 5322 §2.1 separates the header from the body by an empty line, and
// §2.2 makes every header line a field ("name:" with a name of printable
// US-ASCII other than ':') or, when it starts with SP or HTAB, the
// continuation of the field above (§2.2.3). Mail in the wild breaks this:
// the classic "Subject: Test Email\r\nHello Bob,\r\n" has no empty line.
// The rule: the header ends at the first line that is empty, or that is
// neither a header field nor a continuation; that line is the first line
// of the body, or, when empty, the separator. A continuation on the very
// first line continues nothing, so it ends the header too.
package mailheader

// Ends reports whether line, one line of a message with or without its LF
// or CRLF, ends the header block under the package's rule. first tells
// whether it is the message's first line. A line given in part (the start
// of a line longer than a read buffer) is judged by that part.
func Ends(line []byte, first bool) bool {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return true // RFC 5322 §2.1: the empty line before the body
	}
	if line[0] == ' ' || line[0] == '\t' {
		return first // RFC 5322 §2.2.3: a continuation of the field above
	}
	return !IsField(line)
}

// IsField reports whether line starts a header field: a field name of one
// or more printable US-ASCII characters other than ':', then ':' (RFC 5322
// §2.2, §3.6.8 ftext).
func IsField(line []byte) bool {
	for i, c := range line {
		switch {
		case c == ':':
			return i > 0
		case c <= ' ' || c > '~':
			return false
		}
	}
	return false
}

// IsBlank reports whether line is the empty line that separates the
// header from the body (CRLF, or a bare LF).
func IsBlank(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}
