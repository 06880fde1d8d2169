package smtp

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Parse errors; the command handlers map them to replies.
var (
	errPathSyntax  = errors.New("bad path syntax")
	errPathTooLong = errors.New("path too long")
	errParamSyntax = errors.New("bad parameter syntax")
)

// param is one ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2,
// esmtp-param).
type param struct {
	Key   string // upper-cased
	Value string
	Set   bool // "KEY=VALUE" rather than "KEY"
}

// parsePathArg parses the argument of MAIL ("FROM:<path> params") or RCPT
// ("TO:<path> params"). keyword is "FROM:" or "TO:" and is matched
// case-insensitively. RFC 5321 §4.1.2 has no space after the colon; like
// Postfix we tolerate spaces there, which many clients send.
//
// It returns the address without angle brackets and with any source route
// stripped (RFC 5321 §4.1.1.3 and Appendix C: a server may ignore it), ""
// for the null path "<>", whether the address has non-ASCII octets (allowed
// only with SMTPUTF8, RFC 6531 §3.3), and the parameters.
func parsePathArg(arg, keyword string) (addr string, nonASCII bool, params []param, err error) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", false, nil, errPathSyntax
	}
	path := strings.TrimLeft(arg[len(keyword):], " ")
	addr, rest, err := parsePath(path)
	if err != nil {
		return "", false, nil, err
	}
	// RFC 5321 §4.5.3.1.3: a reverse-path or forward-path is at most 256
	// octets, "<" and ">" and any source route included. That bound also
	// covers the domain (255 octets, §4.5.3.1.2): no longer one fits. The
	// local-part's 64 octets (§4.5.3.1.1) are not enforced: §4.5.3.1 asks
	// servers to accept longer objects where they can, and SRS, VERP and
	// X.400-style local-parts exceed 64 (Postfix accepts them too).
	if len(path)-len(rest) > maxPathLength {
		return "", false, nil, errPathTooLong
	}
	for i := 0; i < len(addr); i++ {
		if addr[i] >= utf8.RuneSelf {
			nonASCII = true
			break
		}
	}
	params, err = parseParams(rest)
	if err != nil {
		return "", false, nil, err
	}
	return addr, nonASCII, params, nil
}

// maxPathLength is the longest reverse-path or forward-path accepted, in
// octets with its angle brackets (RFC 5321 §4.5.3.1.3).
const maxPathLength = 256

// parsePath parses a Reverse-path or Forward-path at the start of s (RFC
// 5321 §4.1.2):
//
//	Path     = "<" [ A-d-l ":" ] Mailbox ">"
//	A-d-l    = At-domain *( "," At-domain )
//	Mailbox  = Local-part "@" ( Domain / address-literal )
//
// plus the null path "<>". It returns the mailbox and the text after ">".
// Non-ASCII UTF-8 is accepted in the local part and the domain (RFC 6531
// §3.3); the caller refuses it unless SMTPUTF8 was given.
func parsePath(s string) (addr, rest string, err error) {
	p := &pathParser{s: s}
	if !p.consume('<') {
		return "", "", errPathSyntax
	}
	if p.consume('>') {
		return "", s[p.i:], nil
	}
	if p.peek() == '@' {
		// Source route: parsed and dropped.
		for {
			if !p.consume('@') || !p.domain() {
				return "", "", errPathSyntax
			}
			if p.consume(':') {
				break
			}
			if !p.consume(',') {
				return "", "", errPathSyntax
			}
		}
	}
	start := p.i
	if !p.localPart() || !p.consume('@') {
		return "", "", errPathSyntax
	}
	if p.peek() == '[' {
		if !p.addressLiteral() {
			return "", "", errPathSyntax
		}
	} else if !p.domain() {
		return "", "", errPathSyntax
	}
	addr = s[start:p.i]
	if !p.consume('>') || !utf8.ValidString(s[:p.i]) {
		return "", "", errPathSyntax
	}
	return addr, s[p.i:], nil
}

// isPostmaster reports whether arg (after "TO:") is "<Postmaster>" without a
// domain, which RFC 5321 §4.1.1.3 requires servers to accept, and returns
// the text after it.
func isPostmaster(arg string) (rest string, ok bool) {
	arg = strings.TrimLeft(arg, " ")
	const pm = "<postmaster>"
	if len(arg) < len(pm) || !strings.EqualFold(arg[:len(pm)], pm) {
		return "", false
	}
	return arg[len(pm):], true
}

type pathParser struct {
	s string
	i int
}

func (p *pathParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *pathParser) consume(c byte) bool {
	if p.peek() == c && p.i < len(p.s) {
		p.i++
		return true
	}
	return false
}

// isAtext reports whether c is atext (RFC 5322 §3.2.3), extended with the
// octets of UTF-8 sequences (RFC 6531 §3.3, UTF8-non-ascii).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c >= utf8.RuneSelf:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// localPart parses Dot-string / Quoted-string (RFC 5321 §4.1.2).
func (p *pathParser) localPart() bool {
	if p.consume('"') {
		for p.i < len(p.s) {
			c := p.s[p.i]
			switch {
			case c == '"':
				p.i++
				return true
			case c == '\\':
				// quoted-pairSMTP = %d92 %d32-126
				if p.i+1 >= len(p.s) || p.s[p.i+1] < 32 || p.s[p.i+1] > 126 {
					return false
				}
				p.i += 2
			case c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || c >= utf8.RuneSelf:
				// qtextSMTP, plus UTF8-non-ascii (RFC 6531).
				p.i++
			default:
				return false
			}
		}
		return false
	}
	// Dot-string = Atom *("." Atom)
	for {
		start := p.i
		for p.i < len(p.s) && isAtext(p.s[p.i]) {
			p.i++
		}
		if p.i == start {
			return false
		}
		if !p.consume('.') {
			return true
		}
	}
}

// domain parses Domain = sub-domain *("." sub-domain), sub-domain = Let-dig
// [Ldh-str] (RFC 5321 §4.1.2), with U-labels allowed (RFC 6531 §3.3).
func (p *pathParser) domain() bool {
	for {
		start := p.i
		for p.i < len(p.s) {
			c := p.s[p.i]
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c >= utf8.RuneSelf {
				p.i++
				continue
			}
			break
		}
		label := p.s[start:p.i]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		if !p.consume('.') {
			return true
		}
	}
}

// addressLiteral parses "[" ( IPv4-address-literal / IPv6-address-literal /
// General-address-literal ) "]" (RFC 5321 §4.1.3).
func (p *pathParser) addressLiteral() bool {
	if !p.consume('[') {
		return false
	}
	end := strings.IndexByte(p.s[p.i:], ']')
	if end < 0 {
		return false
	}
	lit := p.s[p.i : p.i+end]
	p.i += end + 1
	if tag, v, ok := strings.Cut(lit, ":"); ok {
		if strings.EqualFold(tag, "IPv6") {
			a, err := netip.ParseAddr(v)
			return err == nil && a.Is6() && a.Zone() == ""
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent
		if tag == "" || tag[len(tag)-1] == '-' || v == "" {
			return false
		}
		for i := 0; i < len(tag); i++ {
			c := tag[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
		// dcontent is %d33-90 / %d94-126; '<', '>' and '"' are refused as
		// well (a deliberate restriction), so that no address can close the
		// angle brackets of a Return-Path or Received header.
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 33 || c > 126 || strings.IndexByte(`[\]<>"`, c) >= 0 {
				return false
			}
		}
		return true
	}
	a, err := netip.ParseAddr(lit)
	return err == nil && a.Is4()
}

// parseParams parses the text after a path: "" or SP esmtp-param *(SP
// esmtp-param) (RFC 5321 §4.1.2). Extra spaces are tolerated. Keywords are
// upper-cased; a keyword given twice is a syntax error.
//
//	esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//	esmtp-value   = 1*(%d33-60 / %d62-126)
func parseParams(s string) ([]param, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != ' ' {
		return nil, errParamSyntax
	}
	var params []param
	for _, f := range strings.Split(s, " ") {
		if f == "" {
			continue
		}
		k, v, set := strings.Cut(f, "=")
		if k == "" || k[0] == '-' {
			return nil, errParamSyntax
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return nil, errParamSyntax
			}
		}
		if set {
			if v == "" {
				return nil, errParamSyntax
			}
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 33 || c > 126 || c == '=' {
					return nil, errParamSyntax
				}
			}
		}
		k = strings.ToUpper(k)
		for _, p := range params {
			if p.Key == k {
				return nil, errParamSyntax
			}
		}
		params = append(params, param{Key: k, Value: v, Set: set})
	}
	return params, nil
}

// parseSize parses a SIZE value (RFC 1870 §3: 1*20DIGIT) or a BDAT
// chunk-size (RFC 3030 §2: 1*DIGIT) strictly: digits only, no sign, at most
// 20 digits. Values beyond int64 saturate at math.MaxInt64, which is over
// any limit.
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-9)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
