package textio

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// Errors returned by Limiter.Acquire.
var (
	ErrTooManyConns  = errors.New("too many connections")
	ErrTooManyFromIP = errors.New("too many connections from this address")
)

// Limiter caps connections overall and per client IP. Clients for which
// Exempt returns true (loopback and trusted networks) are not subject to the
// per-IP cap; every client counts toward the total. The zero value allows
// everything. It is safe for concurrent use.
type Limiter struct {
	Max      int // total connections; 0 means unlimited
	MaxPerIP int // per client IP; 0 means unlimited
	Exempt   func(netip.Addr) bool

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// Acquire reserves a slot for a connection from addr. On success the
// returned func releases it; it must be called exactly once.
func (l *Limiter) Acquire(addr net.Addr) (release func(), err error) {
	ip := AddrIP(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.total >= l.Max {
		return nil, ErrTooManyConns
	}
	perIP := l.MaxPerIP > 0 && (l.Exempt == nil || !l.Exempt(ip))
	if perIP && l.perIP[ip] >= l.MaxPerIP {
		return nil, ErrTooManyFromIP
	}
	l.total++
	if l.perIP == nil {
		l.perIP = make(map[netip.Addr]int)
	}
	l.perIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total--
			if l.perIP[ip]--; l.perIP[ip] <= 0 {
				delete(l.perIP, ip)
			}
			l.mu.Unlock()
		})
	}, nil
}

// Count returns the number of connections currently held.
func (l *Limiter) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// AddrIP returns the IP of a TCP address (unmapped from IPv4-in-IPv6), or
// the zero Addr when addr carries none.
func AddrIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Networks is a list of IP prefixes, such as --trusted-networks.
type Networks []netip.Prefix

// ParseNetworks parses a comma- or space-separated list of CIDR prefixes or
// single addresses.
func ParseNetworks(s string) (Networks, error) {
	var n Networks
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			n = append(n, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix", f)
		}
		n = append(n, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return n, nil
}

// Contains reports whether ip is in one of the prefixes.
func (n Networks) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range n {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// IsLocal reports whether ip is loopback or in n: the clients exempt from
// per-IP caps (DESIGN.md, "Limits and who is exempt").
func (n Networks) IsLocal(ip netip.Addr) bool {
	return ip.IsLoopback() || n.Contains(ip)
}

// NewID returns a short random identifier for a connection, used on every
// log line of a session and echoed in error replies.
func NewID() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford base32
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%32]
	}
	return string(b[:])
}
