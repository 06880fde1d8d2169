package server

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"postoffice/internal/metrics"
	"postoffice/internal/netpolicy"
)

// The PROXY protocol (HAProxy's PROXY protocol, versions 1 and 2) on the
// listeners named by --proxy-protocol: docs/operations.md, "PROXY
// protocol". The header is parsed by github.com/pires/go-proxyproto.
//
// Policy (the spec's receiver posture, section 1 of
// haproxy.org/download/2.9/doc/proxy-protocol.txt: "the receiver MUST be
// configured to only receive the protocol described in this specification
// and MUST not try to guess whether the protocol header is present or
// not"; the same as go-proxyproto's TrustProxyHeaderFromRanges and
// Dovecot's haproxy_trusted_networks):
//   - a connection from an address outside --proxy-trusted is closed at
//     once, before a byte is read;
//   - a connection from a trusted address MUST start with a v1 or v2
//     header within --proxy-header-timeout; no header, garbage or a
//     malformed header closes it;
//   - a v2 LOCAL header (the balancer's health checks) or a v1 UNKNOWN /
//     v2 UNSPEC one keeps the connection's own addresses (spec section
//     2.1 and 2.2: the receiver "MUST use the real connection endpoints");
//   - a PROXY header for TCP over IPv4 or IPv6 replaces the connection's
//     remote and local addresses by the header's source and destination,
//     so that every layer above (the failed-login block, the per-IP
//     connection limit, the logs, SMTP's Received header, the web's
//     request address) sees the client's address;
//   - a header announcing UDP or a Unix socket is refused: these are TCP
//     listeners.
//
// Refusals are logged (with the source address and the reason) and
// counted in postoffice_connections_rejected_total with the reasons
// proxy_untrusted and proxy_header.
//
// The header is read on a goroutine of its own per connection, not in
// Accept: a slow or silent balancer connection must not hold up the
// others. At most maxPending headers are awaited at once; beyond that a
// new connection is refused.

// proxyListener wraps a raw TCP listener: Accept returns connections whose
// PROXY header has been read and checked.
type proxyListener struct {
	net.Listener
	trusted    netpolicy.Networks
	timeout    time.Duration
	maxPending int
	log        *slog.Logger
	proto      string
	m          *metrics.Metrics

	conns     chan net.Conn
	errs      chan error
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	pending   int
}

// newProxyListener starts accepting on l. Close stops it.
func newProxyListener(l net.Listener, trusted netpolicy.Networks, timeout time.Duration, maxPending int, log *slog.Logger, proto string, m *metrics.Metrics) *proxyListener {
	if maxPending < 1 {
		maxPending = 1
	}
	p := &proxyListener{
		Listener: l, trusted: trusted, timeout: timeout, maxPending: maxPending,
		log: log, proto: proto, m: m,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
	}
	go p.acceptLoop()
	return p
}

func (p *proxyListener) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := p.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				p.closeOnce.Do(func() { close(p.done) }) // Accept: net.ErrClosed
				return
			}
			select {
			case p.errs <- err:
			case <-p.done:
				return
			}
			// EMFILE and the like: do not spin (net/http's backoff).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.done:
				return
			}
			continue
		}
		backoff = 0
		ip := netpolicy.AddrIP(c.RemoteAddr())
		if !p.trusted.Contains(ip) {
			p.refuse(c, "proxy_untrusted", "connection refused: source is not in --proxy-trusted", ip, nil)
			continue
		}
		p.mu.Lock()
		full := p.pending >= p.maxPending
		if !full {
			p.pending++
		}
		p.mu.Unlock()
		if full {
			p.refuse(c, "limit", "connection refused: too many PROXY headers awaited", ip, nil)
			continue
		}
		go p.handshake(c, ip)
	}
}

// handshake reads and checks the PROXY header of c, then hands the
// connection to Accept.
func (p *proxyListener) handshake(c net.Conn, ip netip.Addr) {
	defer func() {
		p.mu.Lock()
		p.pending--
		p.mu.Unlock()
	}()
	pc, err := readProxyHeader(c, p.timeout)
	if err != nil {
		p.refuse(c, "proxy_header", "connection refused: no valid PROXY header", ip, err)
		return
	}
	select {
	case p.conns <- pc:
	case <-p.done:
		c.Close()
	}
}

func (p *proxyListener) refuse(c net.Conn, reason, msg string, ip netip.Addr, err error) {
	p.m.ConnRejected(p.proto, reason)
	args := []any{"conn", netpolicy.NewID(), "ip", ip.String()}
	if err != nil {
		args = append(args, "err", err)
	}
	p.log.Warn(msg, args...)
	c.Close()
}

// Accept returns the next connection whose header was accepted.
func (p *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case err := <-p.errs:
		return nil, err
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections still sending their header are
// closed.
func (p *proxyListener) Close() error {
	err := p.Listener.Close()
	p.closeOnce.Do(func() { close(p.done) })
	return err
}

// proxiedConn is a connection after its PROXY header: reads start with
// what was buffered past the header; the addresses are the header's.
type proxiedConn struct {
	net.Conn
	r             *bufio.Reader
	remote, local net.Addr
}

func (c *proxiedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *proxiedConn) RemoteAddr() net.Addr       { return c.remote }
func (c *proxiedConn) LocalAddr() net.Addr        { return c.local }

// readProxyHeader reads the PROXY header at the start of c within timeout
// and returns the connection as the protocols see it.
func readProxyHeader(c net.Conn, timeout time.Duration) (net.Conn, error) {
	r := bufio.NewReader(c)
	h, err := proxyproto.ReadHeaderTimeout(c, r, timeout)
	if err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
			return nil, fmt.Errorf("no PROXY header within %s (or not one)", timeout)
		}
		return nil, err
	}
	pc := &proxiedConn{Conn: c, r: r, remote: c.RemoteAddr(), local: c.LocalAddr()}
	switch {
	case h.Command.IsLocal(), h.TransportProtocol.IsUnspec():
		// Health checks of the balancer and "UNKNOWN": its own address.
	case h.TransportProtocol == proxyproto.TCPv4, h.TransportProtocol == proxyproto.TCPv6:
		src, dst, ok := h.TCPAddrs()
		if !ok {
			return nil, fmt.Errorf("PROXY header without TCP addresses")
		}
		pc.remote, pc.local = src, dst
	default:
		return nil, fmt.Errorf("PROXY header for a transport other than TCP (%#x)", byte(h.TransportProtocol))
	}
	return pc, nil
}

// proxyWrap wraps the raw listener of the listener name in a
// proxyListener when --proxy-protocol names it, else returns it as it
// is. It goes first, under the failed-login block and TLS.
func (s *Server) proxyWrap(name string, l net.Listener) net.Listener {
	if !s.cfg.ProxyEnabled(name) {
		return l
	}
	s.log.Info("expecting PROXY protocol headers", "proto", name, "trusted", netsString(s.cfg.ProxyTrusted))
	return newProxyListener(l, s.cfg.ProxyTrusted, s.cfg.ProxyHeaderTimeout, s.cfg.MaxConnections,
		s.log.With("proto", name), name, s.metrics)
}

func netsString(n netpolicy.Networks) string {
	var b []byte
	for i, p := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = p.AppendTo(b)
	}
	return string(b)
}
