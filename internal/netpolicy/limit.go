// Package netpolicy decides who may connect and names each connection:
// caps on connections overall and per client IP (Limiter), the trusted
// networks exempt from the per-IP caps (Networks, IsLocal), the client IP
// of a connection (AddrIP), and the random id logged on every line of a
// session (NewID). The SMTP and POP3 engines, the server and the config
// share it; it depends on the standard library only.
package netpolicy

import (
	"errors"
	"net"
	"net/netip"
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
