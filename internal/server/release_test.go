package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"postoffice/internal/config"
	"postoffice/internal/testsupport"
)

// farServer is an SMTP server of go-smtp that a release goes to: it
// records each connection and message, and can refuse recipients or data.
type farServer struct {
	addr string

	mu       sync.Mutex
	conns    int
	messages []farMessage

	rcptErr func(to string) error // nil accepts every recipient
	dataErr error
}

type farMessage struct {
	helo string
	tls  bool
	from string
	to   []string
	data []byte
}

func (f *farServer) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	f.mu.Lock()
	f.conns++
	f.mu.Unlock()
	return &farSession{f: f, c: c}, nil
}

type farSession struct {
	f    *farServer
	c    *gosmtp.Conn
	from string
	to   []string
}

func (s *farSession) Reset()        { s.from, s.to = "", nil }
func (s *farSession) Logout() error { return nil }
func (s *farSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *farSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.f.rcptErr != nil {
		if err := s.f.rcptErr(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *farSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.f.dataErr != nil {
		return s.f.dataErr
	}
	_, isTLS := s.c.TLSConnectionState()
	s.f.mu.Lock()
	s.f.messages = append(s.f.messages, farMessage{helo: s.c.Hostname(), tls: isTLS, from: s.from, to: s.to, data: data})
	s.f.mu.Unlock()
	return nil
}

func (f *farServer) stats() (int, []farMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, append([]farMessage(nil), f.messages...)
}

// startFar serves a farServer on a loopback port, with STARTTLS when
// tlsConfig is set.
func startFar(t *testing.T, tlsConfig *tls.Config, edit func(*farServer)) *farServer {
	t.Helper()
	f := &farServer{}
	if edit != nil {
		edit(f)
	}
	l := testsupport.Listen(t)
	srv := gosmtp.NewServer(f)
	srv.Domain = "far.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLSConfig = tlsConfig
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	f.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

// storeBySMTP delivers a message to s over SMTP and returns its id and
// its stored octets.
func storeBySMTP(t *testing.T, s *Server, from, msg string) (string, []byte) {
	t.Helper()
	if err := smtp.SendMail(s.Listener("smtp").Addr().String(), nil, from, []string{"user@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	l, err := s.store.List("user")
	if err != nil || len(l) == 0 {
		t.Fatalf("after SMTP: %v %v", l, err)
	}
	last := l[len(l)-1]
	rc, err := last.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return last.ID, raw
}

// stripTrace removes the leading trace fields (Return-Path, Received, and
// their folded lines) of a message.
func stripTrace(raw []byte) []byte {
	for {
		i := bytes.Index(raw, []byte("\r\n"))
		if i < 0 {
			return raw
		}
		line := string(raw[:i])
		name, _, _ := strings.Cut(line, ":")
		if !strings.EqualFold(name, "Return-Path") && !strings.EqualFold(name, "Received") && !strings.EqualFold(name, "X-Original-To") && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			return raw
		}
		raw = raw[i+2:]
	}
}

// withoutReturnPath is raw less its first line, our Return-Path, and
// less the X-Original-To lines of our delivery: what a release sends.
func withoutReturnPath(t *testing.T, raw []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(raw, []byte("Return-Path: <")) {
		t.Fatalf("no Return-Path first: %q", raw[:min(80, len(raw))])
	}
	raw = raw[bytes.Index(raw, []byte("\r\n"))+2:]
	var out []byte
	for _, l := range bytes.SplitAfter(raw, []byte("\r\n")) {
		if !bytes.HasPrefix(l, []byte("X-Original-To: ")) {
			out = append(out, l...)
		}
	}
	return out
}

const releaseMsg = "From: Orig <orig@example.org>\r\nTo: user@example.org\r\nSubject: release me\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße, 8-bit body\r\n.leading dot\r\n"

type releaseAnswer struct {
	ID    string   `json:"id"`
	Addr  string   `json:"addr"`
	From  string   `json:"from"`
	To    []string `json:"to"`
	TLS   string   `json:"tls"`
	Reply string   `json:"reply"`
}

// TestReleaseToSecondPostoffice releases a stored message to a second
// Postoffice (--relay-addr): it arrives byte-identical apart from the
// trace fields, from the stored envelope sender, the EHLO name being our
// --hostname; "from" overrides the sender.
func TestReleaseToSecondPostoffice(t *testing.T) {
	b := opsServer(t, func(c *config.Config) { c.Hostname = "far.test" })
	a := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = b.Listener("smtp").Addr().String()
	})
	id, raw := storeBySMTP(t, a, "orig@example.org", releaseMsg)
	c := newAPIClient(t, a)
	var ans releaseAnswer
	c.call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"Dest <dest@example.test>"}}, http.StatusOK, &ans)
	if ans.ID != id || ans.Addr != b.Listener("smtp").Addr().String() || ans.From != "orig@example.org" || ans.TLS != "" ||
		len(ans.To) != 1 || ans.To[0] != "dest@example.test" || !strings.Contains(ans.Reply, "queued as") {
		t.Errorf("answer %+v", ans)
	}
	// The 200 came after the far 250: the copy is durable there now.
	l, err := b.store.List("user")
	if err != nil || len(l) != 1 {
		t.Fatalf("second instance: %v %v", l, err)
	}
	rc, err := l[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(stripTrace(got), stripTrace(raw)) {
		t.Errorf("released message differs:\n%q\nstored:\n%q", got, raw)
	}
	if !bytes.HasPrefix(got, []byte("Return-Path: <orig@example.org>\r\nReceived: from mx.test ([127.0.0.1])\r\n")) {
		t.Errorf("trace at the second instance: %q", got[:min(200, len(got))])
	}
	// The original envelope recipients stay behind.
	if bytes.Contains(got, []byte("X-Original-To: user@example.org")) {
		t.Errorf("the stored X-Original-To was released: %q", got[:min(400, len(got))])
	}
	// Our own Received of the first arrival travels with the message.
	if bytes.Count(got, []byte("Received: ")) != 2 || bytes.Count(got, []byte("Return-Path: ")) != 1 {
		t.Errorf("trace fields: %q", got[:min(400, len(got))])
	}

	c.call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"a@example.test", "b@example.test"}, "from": "bounce@example.test"}, http.StatusOK, &ans)
	l, _ = b.store.List("user")
	if len(l) != 2 {
		t.Fatalf("second release: %d messages", len(l))
	}
	rc, _ = l[1].Open()
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.HasPrefix(got, []byte("Return-Path: <bounce@example.test>\r\n")) || !bytes.Equal(stripTrace(got), stripTrace(raw)) {
		t.Errorf("release with from: %q", got[:min(200, len(got))])
	}
}

// TestReleaseRefused: recipients outside --relay-allow and targets other
// than --relay-addr and --relay-allow-addr are refused with 403 before
// any connection; without --relay-allow release is off; bad requests are
// 400, an unknown message 404.
func TestReleaseRefused(t *testing.T) {
	far := startFar(t, nil, nil)
	other := startFar(t, nil, nil)
	a := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test", "ops@corp.test"}
		c.RelayAddr = far.addr
	})
	id, raw := storeBySMTP(t, a, "orig@example.org", releaseMsg)
	c := newAPIClient(t, a)
	path := "/api/v1/mailboxes/user/messages/" + id + "/release"
	for _, tc := range []struct {
		body any
		code int
		want string
	}{
		{map[string]any{"to": []string{"x@other.test"}}, 403, "recipient x@other.test is not allowed"},
		{map[string]any{"to": []string{"ops@corp.test", "y@corp.test"}}, 403, "y@corp.test"},
		{map[string]any{"to": []string{"x@example.test.evil"}}, 403, "not allowed"},
		{map[string]any{"to": []string{"x@example.test"}, "addr": other.addr}, 403, "neither --relay-addr nor listed in --relay-allow-addr"},
		{map[string]any{"to": []string{}}, 400, "at least one recipient"},
		{map[string]any{"to": []string{"not an address"}}, 400, "to[0]"},
		{map[string]any{"to": []string{"x@example.test"}, "from": "bad"}, 400, "from:"},
		{`{"to":["x@example.test"],"host":"x"}`, 400, "unknown field"},
	} {
		var e apiError
		c.call("POST", path, tc.body, tc.code, &e)
		if !strings.Contains(e.Error, tc.want) {
			t.Errorf("%v: %q, want %q", tc.body, e.Error, tc.want)
		}
	}
	c.call("POST", "/api/v1/mailboxes/user/messages/nosuchid/release", map[string]any{"to": []string{"x@example.test"}}, 404, nil)
	for _, f := range []*farServer{far, other} {
		if conns, _ := f.stats(); conns != 0 {
			t.Errorf("a refused release connected to %s %d times", f.addr, conns)
		}
	}
	// Allowed, in any case of the letters: it goes, unchanged but for
	// the Return-Path (the far server is go-smtp, which adds nothing).
	c.call("POST", path, map[string]any{"to": []string{"OPS@Corp.test"}}, 200, nil)
	if _, msgs := far.stats(); len(msgs) != 1 || !bytes.Equal(msgs[0].data, withoutReturnPath(t, raw)) ||
		msgs[0].from != "orig@example.org" || msgs[0].to[0] != "OPS@Corp.test" || msgs[0].helo != "mx.test" || msgs[0].tls {
		t.Errorf("far server got %+v", msgs)
	}

	// No --relay-allow: release is disabled.
	off := opsServer(t, func(c *config.Config) { c.RelayAddr = far.addr })
	id, _ = storeBySMTP(t, off, "orig@example.org", releaseMsg)
	var e apiError
	newAPIClient(t, off).call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@example.test"}}, 403, &e)
	if !strings.Contains(e.Error, "disabled") {
		t.Errorf("release off: %q", e.Error)
	}
	// --relay-allow-addr lets a request name another target; no
	// --relay-addr and no addr is a 400.
	listed := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*"}
		c.RelayAllowAddr = []string{other.addr}
	})
	id, _ = storeBySMTP(t, listed, "orig@example.org", releaseMsg)
	lc := newAPIClient(t, listed)
	lc.call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@anywhere.test"}}, 400, nil)
	lc.call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@anywhere.test"}, "addr": other.addr}, 200, nil)
	if _, msgs := other.stats(); len(msgs) != 1 {
		t.Errorf("listed target got %d messages", len(msgs))
	}
}

// TestReleaseTargetDown: a target that refuses the connection, and one
// that never greets, are 502 with the reason; the server stays up.
func TestReleaseTargetDown(t *testing.T) {
	l := testsupport.Listen(t)
	down := l.Addr().String()
	l.Close()
	silent := testsupport.Listen(t)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	a := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = down
		c.RelayAllowAddr = []string{silent.Addr().String()}
		c.RelayTimeout = 300 * time.Millisecond
	})
	id, _ := storeBySMTP(t, a, "orig@example.org", releaseMsg)
	c := newAPIClient(t, a)
	path := "/api/v1/mailboxes/user/messages/" + id + "/release"
	var e apiError
	c.call("POST", path, map[string]any{"to": []string{"x@example.test"}}, http.StatusBadGateway, &e)
	if e.Stage != "connect" || !strings.Contains(e.Error, "connection refused") || e.SMTP != nil {
		t.Errorf("target down: %+v", e)
	}
	e = apiError{}
	c.call("POST", path, map[string]any{"to": []string{"x@example.test"}, "addr": silent.Addr().String()}, http.StatusBadGateway, &e)
	if e.Stage != "connect" || !strings.Contains(e.Error, "timeout") {
		t.Errorf("silent target: %+v", e)
	}
	c.call("GET", "/api/v1/mailboxes/user/messages/"+id, nil, 200, nil)
}

// TestReleaseFarRefusals: the far server's refusal of a recipient (550
// 5.1.1) or of the data comes back verbatim in a 502, and nothing is
// delivered.
func TestReleaseFarRefusals(t *testing.T) {
	const text = "<nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table"
	far := startFar(t, nil, func(f *farServer) {
		f.rcptErr = func(to string) error {
			if strings.HasPrefix(to, "nobody@") {
				return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: text}
			}
			return nil
		}
		f.dataErr = nil
	})
	a := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = far.addr
	})
	id, _ := storeBySMTP(t, a, "orig@example.org", releaseMsg)
	c := newAPIClient(t, a)
	path := "/api/v1/mailboxes/user/messages/" + id + "/release"
	var e apiError
	c.call("POST", path, map[string]any{"to": []string{"ok@example.test", "nobody@example.test"}}, http.StatusBadGateway, &e)
	if e.Stage != "RCPT" || e.Recipient != "nobody@example.test" || e.SMTP == nil || e.SMTP.Code != 550 ||
		e.SMTP.Enhanced != "5.1.1" || e.SMTP.Message != text || !strings.Contains(e.Error, "550 5.1.1 "+text) {
		t.Errorf("RCPT refused: %+v %+v", e, e.SMTP)
	}
	if _, msgs := far.stats(); len(msgs) != 0 {
		t.Errorf("delivered despite the refusal: %d", len(msgs))
	}

	dataFar := startFar(t, nil, func(f *farServer) {
		f.dataErr = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Content rejected"}
	})
	a2 := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = dataFar.addr
	})
	id, _ = storeBySMTP(t, a2, "orig@example.org", releaseMsg)
	e = apiError{}
	newAPIClient(t, a2).call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"ok@example.test"}}, http.StatusBadGateway, &e)
	if e.Stage != "DATA" || e.SMTP == nil || e.SMTP.Code != 554 || e.SMTP.Enhanced != "5.6.0" || e.SMTP.Message != "Content rejected" {
		t.Errorf("DATA refused: %+v", e)
	}
}

// TestReleaseSTARTTLS: a target that offers STARTTLS gets the message
// over TLS; its certificate is verified unless --relay-insecure-tls (a
// self-signed one fails the release, 502, nothing sent).
func TestReleaseSTARTTLS(t *testing.T) {
	serverTLS, _ := testsupport.TLSPair(t, "far.test")
	far := startFar(t, serverTLS, nil)
	edit := func(insecure bool) func(*config.Config) {
		return func(c *config.Config) {
			c.RelayAllow = []string{"*@example.test"}
			c.RelayAddr = far.addr
			c.RelayInsecureTLS = insecure
		}
	}
	strict := opsServer(t, edit(false))
	id, _ := storeBySMTP(t, strict, "orig@example.org", releaseMsg)
	var e apiError
	newAPIClient(t, strict).call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@example.test"}}, http.StatusBadGateway, &e)
	if e.Stage != "STARTTLS" || !strings.Contains(e.Error, "certificate") {
		t.Errorf("unverifiable certificate: %+v", e)
	}
	if _, msgs := far.stats(); len(msgs) != 0 {
		t.Fatalf("sent despite the failed verification")
	}

	insecure := opsServer(t, edit(true))
	id, raw := storeBySMTP(t, insecure, "orig@example.org", releaseMsg)
	var ans releaseAnswer
	newAPIClient(t, insecure).call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@example.test"}}, http.StatusOK, &ans)
	if ans.TLS != "TLSv1.3" {
		t.Errorf("answer %+v", ans)
	}
	_, msgs := far.stats()
	if len(msgs) != 1 || !msgs[0].tls || msgs[0].helo != "mx.test" || !bytes.Equal(msgs[0].data, withoutReturnPath(t, raw)) {
		t.Errorf("far server got %+v", msgs)
	}
}

// TestReleaseToSMTPSink releases to Postfix's smtp-sink when it is
// installed.
func TestReleaseToSMTPSink(t *testing.T) {
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Skip("smtp-sink (Postfix) is not installed")
	}
	l := testsupport.Listen(t)
	addr := l.Addr().String()
	l.Close()
	dump := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-d", filepath.Join(dump, "%Y%m%d%H%M%S."), addr, "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	testsupport.WaitFor(t, "smtp-sink listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	a := opsServer(t, func(c *config.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = addr
	})
	id, raw := storeBySMTP(t, a, "orig@example.org", releaseMsg)
	newAPIClient(t, a).call("POST", "/api/v1/mailboxes/user/messages/"+id+"/release", map[string]any{"to": []string{"x@example.test"}}, http.StatusOK, nil)
	files, _ := filepath.Glob(filepath.Join(dump, "*"))
	if len(files) != 1 {
		t.Fatalf("smtp-sink dumped %d files", len(files))
	}
	got, _ := os.ReadFile(files[0])
	if !bytes.Contains(got, stripTrace(raw)) && !bytes.Contains(bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(stripTrace(raw), []byte("\r\n"), []byte("\n"))) {
		t.Errorf("smtp-sink's dump does not hold the message:\n%s", got)
	}
}
