package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"postoffice/internal/config"
	"postoffice/internal/netpolicy"
	"postoffice/internal/testsupport"
)

// proxyServer starts a server whose listeners named in names expect a
// PROXY header from 127.0.0.1 (the only trusted source), logging into the
// returned buffer. Plaintext logins are allowed: the clients the headers
// name are not local.
func proxyServer(t *testing.T, names string, edit func(*config.Config)) (*Server, *testsupport.LogBuffer) {
	t.Helper()
	cfg := testsupport.Config(t)
	cfg.ProxyProtocol = strings.Split(names, ",")
	cfg.ProxyTrusted = netpolicy.Networks{mustPrefix(t, "127.0.0.1/32")}
	cfg.AllowInsecureAuth = true // the proxied clients are not local
	if edit != nil {
		edit(&cfg)
	}
	logs := &testsupport.LogBuffer{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	testsupport.Start(t, s)
	return s, logs
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	n, err := netpolicy.ParseNetworks(s)
	if err != nil || len(n) != 1 {
		t.Fatalf("%s: %v", s, err)
	}
	return n[0]
}

// v2Header is the binary PROXY v2 header (written by go-proxyproto) of a
// TCP connection from the client ip (port 40000) to the listener addr.
func v2Header(t *testing.T, ip string, addr net.Addr) []byte {
	t.Helper()
	src := &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
	h := proxyproto.HeaderProxyFromAddrs(2, src, addr)
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\r\n\r\n\x00\r\nQUIT\n")) {
		t.Fatalf("not a v2 header: %q", b)
	}
	return b
}

// v1Header is the text PROXY v1 header, written by hand (spec section
// 2.1), of a TCP4 connection from ip to the listener addr.
func v1Header(ip string, addr net.Addr) []byte {
	ta := addr.(*net.TCPAddr)
	return fmt.Appendf(nil, "PROXY TCP4 %s %s 40001 %d\r\n", ip, ta.IP, ta.Port)
}

// dialWith connects to the listener from the local address from ("" for
// the default, 127.0.0.1) and sends pre first.
func dialWith(t *testing.T, l net.Listener, from string, pre []byte) *testsupport.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testsupport.Timeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := testsupport.NewConn(t, nc)
	if len(pre) > 0 {
		if _, err := nc.Write(pre); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func smtpDeliver(t *testing.T, c *testsupport.Conn, subject string) {
	t.Helper()
	c.ExpectReply("220 *")
	c.Cmd("EHLO client.test", "250 *")
	c.Cmd("MAIL FROM:<a@example.org>", "250 *")
	c.Cmd("RCPT TO:<user@example.org>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("Subject: "+subject+"\r\n\r\nbody\r\n.", "250 *")
	c.Cmd("QUIT", "221 *")
}

// TestProxyV2SMTPReceivedHeader: a message accepted on a connection
// opened with a v2 header claiming 203.0.113.7 is stored with a Received
// header naming 203.0.113.7 (RFC 5321 §4.4: the TCP-info is the address
// of the client); one opened with a v2 LOCAL header (a balancer's health
// check) keeps the balancer's own address. The message is read back over
// POP3 opened with a v1 text header.
func TestProxyV2SMTPReceivedHeader(t *testing.T) {
	s, _ := proxyServer(t, "smtp,pop3", nil)
	smtpL, pop3L := s.Listener("smtp"), s.Listener("pop3")

	smtpDeliver(t, dialWith(t, smtpL, "", v2Header(t, "203.0.113.7", smtpL.Addr())), "proxied")
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	lb, err := local.Format()
	if err != nil {
		t.Fatal(err)
	}
	smtpDeliver(t, dialWith(t, smtpL, "", lb), "local")

	p := dialWith(t, pop3L, "", v1Header("198.51.100.4", pop3L.Addr()))
	p.POP3Login("user", "pass")
	p.Cmd("RETR 1", "+OK*")
	m1 := p.MultilineText()
	p.Cmd("RETR 2", "+OK*")
	m2 := p.MultilineText()
	p.Cmd("QUIT", "+OK*")
	if !strings.Contains(m1, "Subject: proxied") || !strings.Contains(m1, "Received: from client.test ([203.0.113.7])") {
		t.Errorf("proxied message:\n%s", m1)
	}
	if !strings.Contains(m2, "Subject: local") || !strings.Contains(m2, "Received: from client.test ([127.0.0.1])") {
		t.Errorf("LOCAL message:\n%s", m2)
	}
}

// TestProxyV1POP3FailedLoginThrottle: the failed-login cap counts the
// address of the v1 header, not the balancer's (loopback, which is exempt
// from the cap anyway): after the failures of 192.0.2.10 a new connection
// claiming it is refused before the greeting, one claiming 192.0.2.11 is
// served.
func TestProxyV1POP3FailedLoginThrottle(t *testing.T) {
	s, _ := proxyServer(t, "pop3", func(c *config.Config) { c.AuthMaxFailures = 2 })
	l := s.Listener("pop3")
	p := dialWith(t, l, "", v1Header("192.0.2.10", l.Addr()))
	p.Expect("+OK*")
	for range 2 {
		p.Cmd("USER user", "+OK*")
		p.Cmd("PASS wrong", "-ERR*")
	}
	p.Close()
	blocked := dialWith(t, l, "", v1Header("192.0.2.10", l.Addr()))
	blocked.Expect("-ERR [AUTH] Too many failed logins*")
	other := dialWith(t, l, "", v1Header("192.0.2.11", l.Addr()))
	other.POP3Login("user", "pass")
}

// TestProxyIMAPSHeaderBeforeTLS: on an implicit-TLS listener the header
// precedes the TLS handshake; the session is the client's.
func TestProxyIMAPSHeaderBeforeTLS(t *testing.T) {
	s, logs := proxyServer(t, "imaps", func(c *config.Config) {
		c.TLSSelfSigned = true
		c.IMAPSAddr = "127.0.0.1:0"
	})
	l := s.Listener("imaps")
	raw := dialWith(t, l, "", v2Header(t, "203.0.113.9", l.Addr()))
	tc := tls.Client(raw.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after the PROXY header: %v", err)
	}
	c := testsupport.NewConn(t, tc)
	c.IMAPLogin("user", "pass")
	c.IMAP("LOGOUT", "OK*")
	if !testsupport.WaitUntil(testsupport.Timeout, func() bool {
		out := logs.String()
		return strings.Contains(out, "remote=203.0.113.9:40000") && strings.Contains(out, "msg=login")
	}) {
		t.Errorf("IMAPS login not logged with the proxied address:\n%s", logs)
	}
}

// TestProxyPerIPConnectionLimit: --max-connections-per-ip counts the
// proxied client: two clients with different addresses behind the same
// balancer are not limited together, a second connection of the first is.
func TestProxyPerIPConnectionLimit(t *testing.T) {
	s, _ := proxyServer(t, "smtp", func(c *config.Config) { c.MaxConnectionsPerIP = 1 })
	l := s.Listener("smtp")
	a := dialWith(t, l, "", v2Header(t, "203.0.113.7", l.Addr()))
	a.ExpectReply("220 *")
	b := dialWith(t, l, "", v2Header(t, "203.0.113.8", l.Addr()))
	b.ExpectReply("220 *")
	a2 := dialWith(t, l, "", v2Header(t, "203.0.113.7", l.Addr()))
	a2.ExpectReply("421 4.7.0 * Too many connections*")
	a.Cmd("QUIT", "221 *")
	b.Cmd("QUIT", "221 *")
}

// TestProxyRefusals: on a PROXY listener, a source outside --proxy-trusted
// is closed before anything is said; a trusted source that sends garbage,
// or a malformed v1 or v2 header, is closed at once (the header timeout is
// a minute here, so "closed within testsupport.Timeout" means "at once");
// the server goes on serving, and every refusal is counted and logged.
func TestProxyRefusals(t *testing.T) {
	s, logs := proxyServer(t, "smtp", func(c *config.Config) { c.ProxyHeaderTimeout = time.Minute })
	l := s.Listener("smtp")

	dialWith(t, l, "127.0.0.2", v2Header(t, "203.0.113.7", l.Addr())).ExpectClosed()
	dialWith(t, l, "127.0.0.2", nil).ExpectClosed()

	v2 := v2Header(t, "203.0.113.7", l.Addr())
	badLen := append([]byte{}, v2...)
	badLen[14], badLen[15] = 0, 4 // an IPv4 address block needs 12 octets
	for _, in := range [][]byte{
		[]byte("EHLO client.test\r\n"),                      // no header: not guessed (spec section 1)
		[]byte("PROXY TCP4 999.0.0.1 127.0.0.1 1 25\r\n"),   // not an address
		[]byte("PROXY TCP4 203.0.113.7 127.0.0.1 1\r\n"),    // a field missing
		[]byte("PROXY TCP4 203.0.113.7 127.0.0.1 1 25\n"),   // not ended by CRLF
		[]byte("PROXY UDP4 203.0.113.7 127.0.0.1 1 25\r\n"), // no such protocol in v1
		badLen,
		append(append([]byte{}, v2[:12]...), 0x2f, 0x11, 0, 12), // version 2, command 15
	} {
		dialWith(t, l, "", in).ExpectClosed()
	}
	// A v2 header for UDP: well-formed, but this is a TCP listener.
	udp := proxyproto.HeaderProxyFromAddrs(2, &net.UDPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1}, &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 25})
	ub, err := udp.Format()
	if err != nil {
		t.Fatal(err)
	}
	dialWith(t, l, "", ub).ExpectClosed()

	smtpDeliver(t, dialWith(t, l, "", v2Header(t, "203.0.113.7", l.Addr())), "still up")

	waitMetric(t, s, `postoffice_connections_rejected_total{proto="smtp",reason="proxy_untrusted"}`, func(v float64) bool { return v == 2 })
	waitMetric(t, s, `postoffice_connections_rejected_total{proto="smtp",reason="proxy_header"}`, func(v float64) bool { return v == 8 })
	out := logs.String()
	if n := strings.Count(out, "connection refused: source is not in --proxy-trusted"); n != 2 || !strings.Contains(out, "ip=127.0.0.2") {
		t.Errorf("untrusted refusals logged %d times:\n%s", n, out)
	}
	if n := strings.Count(out, "connection refused: no valid PROXY header"); n != 8 {
		t.Errorf("header refusals logged %d times:\n%s", n, out)
	}
}

// TestProxyHeaderTimeout: a trusted source that says nothing is closed
// once --proxy-header-timeout has passed; meanwhile other connections are
// served (the header is not awaited in Accept).
func TestProxyHeaderTimeout(t *testing.T) {
	s, logs := proxyServer(t, "smtp", func(c *config.Config) { c.ProxyHeaderTimeout = 300 * time.Millisecond })
	l := s.Listener("smtp")
	silent := dialWith(t, l, "", nil)
	c := dialWith(t, l, "", v2Header(t, "203.0.113.7", l.Addr()))
	c.ExpectReply("220 *")
	silent.ExpectClosed()
	c.Cmd("QUIT", "221 *")
	if !strings.Contains(logs.String(), "no PROXY header within 300ms") {
		t.Errorf("timeout not logged:\n%s", logs)
	}
}

// TestProxyHTTP: the HTTP listener takes the header too; the web inbox
// sees the client's address (its failed-login log line names it), and a
// connection without a header gets no answer.
func TestProxyHTTP(t *testing.T) {
	s, logs := proxyServer(t, "http", nil)
	l := s.Listener("http")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: testsupport.Timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			_, err = c.Write(v1Header("203.0.113.20", l.Addr()))
			return c, err
		},
	}}
	base := "http://" + l.Addr().String()
	resp, err := client.Get(base + "/api/v1/session")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		CSRF string `json:"csrf_token"`
	}
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if resp.StatusCode != 200 || info.CSRF == "" {
		t.Fatalf("session: %d %+v", resp.StatusCode, info)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/login", strings.NewReader(`{"user":"user","password":"wrong"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", info.CSRF)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: %d", resp.StatusCode)
	}
	if !testsupport.WaitUntil(testsupport.Timeout, func() bool { return strings.Contains(logs.String(), "ip=203.0.113.20") }) {
		t.Errorf("web login not logged with the proxied address:\n%s", logs)
	}

	plain := dialWith(t, l, "", []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	plain.ExpectClosed()
}
