package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
)

// maxVerbLen bounds a command keyword. RFC 1939 §3: keywords are three or
// four characters; RFC 2449 §3 allows extensions up to four as well, so
// anything longer is certainly unknown.
const maxVerbLen = 4

// errSyntax is returned by the parsers for a malformed command line.
var errSyntax = errors.New("syntax error")

// command is one parsed client command line.
type command struct {
	// Verb is the upper-cased keyword (RFC 1939 §3: keywords are
	// case-insensitive).
	Verb string
	// Args are the space-separated arguments. RFC 1939 §3 separates them by a
	// single space; runs of spaces are accepted.
	Args []string
	// Rest is everything after the single space that follows the keyword,
	// unmodified: the PASS argument, which may contain spaces (RFC 1939 §7).
	Rest string
}

// parseCommand splits a command line (without its CRLF) into keyword and
// arguments. It rejects empty lines, control characters anywhere in the line
// (NUL, bare CR, ...) and keywords that are not 1-4 ASCII letters.
func parseCommand(line []byte) (command, error) {
	for _, b := range line {
		if b < 0x20 || b == 0x7f {
			return command{}, errSyntax
		}
	}
	verb, rest, _ := bytes.Cut(line, []byte{' '})
	if len(verb) == 0 || len(verb) > maxVerbLen {
		return command{}, errSyntax
	}
	for _, b := range verb {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z') {
			return command{}, errSyntax
		}
	}
	return command{
		Verb: strings.ToUpper(string(verb)),
		Args: strings.Fields(string(rest)),
		Rest: string(rest),
	}, nil
}

// parseMsgNum parses a message-number argument (RFC 1939 §3: a positive
// decimal number) and checks it against the n messages of the maildrop. It
// returns the 0-based index. Signs, spaces, non-digits, zero, values beyond n
// and numbers too large for any maildrop all fail.
func parseMsgNum(s string, n int) (int, bool) {
	v, ok := parseDecimal(s)
	if !ok || v < 1 || v > uint64(n) {
		return 0, false
	}
	return int(v - 1), true
}

// parseDecimal parses a non-empty string of ASCII digits. Values above 2^32
// saturate: no maildrop or line count is that large, and it keeps the
// arithmetic far from overflow.
func parseDecimal(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	const limit = 1 << 32
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v < limit {
			v = v*10 + uint64(c-'0')
		}
	}
	if v > limit {
		v = limit
	}
	return v, true
}

// decodePlain decodes a SASL PLAIN response (RFC 4616 §2:
// [authzid] NUL authcid NUL passwd) from its base64 form (RFC 5034 §4). An
// authorization identity other than the authentication identity is refused:
// Postoffice has no proxy users.
func decodePlain(b64 string) (username, password string, err error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", "", errBadBase64
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return "", "", errBadPlain
	}
	authz, authc, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authc == "" || pass == "" {
		return "", "", errBadPlain
	}
	if authz != "" && authz != authc {
		return "", "", errBadPlain
	}
	return authc, pass, nil
}

// Errors of decodePlain.
var (
	errBadBase64 = errors.New("invalid base64")
	errBadPlain  = errors.New("malformed PLAIN response")
)
