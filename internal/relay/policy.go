package relay

import (
	"net"
	"strings"
)

// Policy says where a stored message may be released to. The zero Policy
// allows nothing: release is off.
type Policy struct {
	// Allow lists the recipients allowed (--relay-allow): addresses or
	// glob patterns of them, "*" matching any run of characters and "?"
	// one, compared without regard to case ("*@example.test",
	// "ops@corp.test"). Empty: release is disabled.
	Allow []string
	// Addr is the default relay target (--relay-addr, host:port); "" for
	// none (then every request must name one).
	Addr string
	// AllowAddrs lists the other targets a request may name
	// (--relay-allow-addr), exactly as host:port. Addr is always allowed.
	AllowAddrs []string
}

// Enabled reports whether release is on: some recipient is allowed.
func (p *Policy) Enabled() bool { return p != nil && len(p.Allow) > 0 }

// Recipient reports whether addr may receive a released message.
func (p *Policy) Recipient(addr string) bool {
	if p == nil {
		return false
	}
	for _, pat := range p.Allow {
		if Match(pat, addr) {
			return true
		}
	}
	return false
}

// Target resolves the relay target of a request: "" is the default Addr.
// It reports false when the target is not allowed. A request may name
// only Addr or one of AllowAddrs, compared as host:port without regard to
// the case of the host: the API must not become a way to make the server
// open connections to any host and port of the caller's choosing (a
// server-side request forgery into the network the server sits in).
func (p *Policy) Target(addr string) (string, bool) {
	if p == nil {
		return "", false
	}
	if addr == "" {
		return p.Addr, p.Addr != ""
	}
	if sameHostPort(addr, p.Addr) {
		return addr, true
	}
	for _, a := range p.AllowAddrs {
		if sameHostPort(addr, a) {
			return addr, true
		}
	}
	return "", false
}

// sameHostPort compares two host:port strings, the host without regard to
// case; a string that is not host:port matches nothing.
func sameHostPort(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	return err1 == nil && err2 == nil && ah != "" && ap == bp && strings.EqualFold(ah, bh)
}

// Match reports whether s matches the glob pattern: "*" matches any run
// of characters (none included), "?" exactly one, everything else itself
// without regard to case. There is no escape and no character class.
func Match(pattern, s string) bool {
	p, t := []rune(strings.ToLower(pattern)), []rune(strings.ToLower(s))
	// Iterative matching with one backtrack point, linear for patterns
	// of stars: no pattern makes it slow.
	pi, ti, star, mark := 0, 0, -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
