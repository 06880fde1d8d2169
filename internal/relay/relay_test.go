package relay

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"postoffice/internal/testsupport"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*@example.test", "a@example.test", true},
		{"*@example.test", "A@EXAMPLE.TEST", true},
		{"*@example.test", "a@example.test.evil", false},
		{"*@example.test", "a@sub.example.test", false},
		{"*@*.example.test", "a@sub.example.test", true},
		{"ops@corp.test", "ops@corp.test", true},
		{"ops@corp.test", "xops@corp.test", false},
		{"o?s@corp.test", "ops@corp.test", true},
		{"o?s@corp.test", "os@corp.test", false},
		{"*", "anything@at.all", true},
		{"", "", true},
		{"", "a", false},
		{"a*b*c", "abxxbyc", true},
		{"a*b*c", "abxxbyd", false},
		{"**@x", "@x", true},
		{"üser@example.test", "ÜSER@example.test", true},
	} {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestPolicy(t *testing.T) {
	var off *Policy
	if off.Enabled() || off.Recipient("a@b") {
		t.Error("nil policy allows")
	}
	p := &Policy{Allow: []string{"*@example.test"}, Addr: "mx.example.test:25", AllowAddrs: []string{"127.0.0.1:2525"}}
	if !p.Enabled() || !p.Recipient("x@example.test") || p.Recipient("x@other.test") {
		t.Error("recipients")
	}
	for _, tc := range []struct {
		in, out string
		ok      bool
	}{
		{"", "mx.example.test:25", true},
		{"MX.example.test:25", "MX.example.test:25", true},
		{"127.0.0.1:2525", "127.0.0.1:2525", true},
		{"127.0.0.1:25", "", false},
		{"mx.example.test:2525", "", false},
		{"169.254.169.254:80", "", false},
		{"mx.example.test", "", false},
	} {
		if out, ok := p.Target(tc.in); out != tc.out || ok != tc.ok {
			t.Errorf("Target(%q) = %q, %v", tc.in, out, ok)
		}
	}
	if _, ok := (&Policy{Allow: []string{"*"}}).Target(""); ok {
		t.Error("no default target, none asked: allowed")
	}
}

func TestInspect(t *testing.T) {
	for _, tc := range []struct {
		name, msg  string
		want       Info
		restPrefix string
	}{
		{"ours", "Return-Path: <a@b.test>\r\nReceived: x\r\nSubject: s\r\n\r\nbody\r\n",
			Info{ReturnPath: "a@b.test", HasReturnPath: true, Skip: 25, Size: 33}, "Received: x"},
		{"null path, folded", "Return-Path:\r\n <>\r\nSubject: s\r\n\r\nb\r\n",
			Info{ReturnPath: "", HasReturnPath: true, Skip: 19, Size: 17}, "Subject"},
		{"two Return-Paths", "Return-Path: <a@b>\r\nreturn-path: <c@d>\r\nX: y\r\n\r\n",
			Info{ReturnPath: "a@b", HasReturnPath: true, Skip: 40, Size: 8}, "X: y"},
		{"none, later one kept", "Subject: s\r\nReturn-Path: <a@b>\r\n\r\nb\r\n",
			Info{Size: 37}, "Subject"},
		{"8-bit body", "Subject: s\r\n\r\nGrüße\r\n", Info{Size: 23, EightBit: true}, "Subject"},
		{"UTF-8 header", "Subject: Grüße\r\n\r\nb\r\n", Info{Size: 23, EightBit: true, UTF8Header: true}, "Subject"},
		{"LF only", "Return-Path: <a@b>\nSubject: s\n\nb\n", Info{ReturnPath: "a@b", HasReturnPath: true, Skip: 19, Size: 14}, "Subject"},
		{"X-Original-To left out", "Return-Path: <a@b>\r\nReceived: x\r\nX-Original-To: bcc@c.test\r\nx-original-to: d@c.test,\r\n e@c.test\r\nSubject: s\r\n\r\nX-Original-To: body\r\n",
			Info{ReturnPath: "a@b", HasReturnPath: true, Skip: 20, Drops: []Span{{33, 64}}, Size: 48}, "Received: x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Inspect(strings.NewReader(tc.msg))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Inspect = %+v, %v; want %+v", got, err, tc.want)
			}
			sent, err := io.ReadAll(Without(strings.NewReader(tc.msg[got.Skip:]), got.Skip, got.Drops))
			if rest := string(sent); err != nil || !strings.HasPrefix(rest, tc.restPrefix) || int64(len(rest)) != got.Size || strings.Contains(rest, "@c.test") {
				t.Errorf("rest %q", rest)
			}
		})
	}
	// A header line longer than the read buffer is counted whole.
	long := "X: " + strings.Repeat("a", 200<<10) + "\r\n\r\nb\r\n"
	if got, err := Inspect(strings.NewReader("Return-Path: <a@b>\r\n" + long)); err != nil || got.Skip != 20 || got.Size != int64(len(long)) {
		t.Errorf("long line: %+v %v", got, err)
	}
}

// scripted serves one connection with the replies of script, in order,
// one per line the client sends (the greeting first), and returns the
// lines it read.
func scripted(t *testing.T, script ...string) (string, <-chan []string) {
	t.Helper()
	l := testsupport.Listen(t)
	out := make(chan []string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			out <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testsupport.Timeout))
		br := bufio.NewReader(c)
		var got []string
		for i, reply := range script {
			if i > 0 {
				line, err := br.ReadString('\n')
				if err != nil {
					break
				}
				got = append(got, strings.TrimRight(line, "\r\n"))
			}
			io.WriteString(c, reply)
		}
		out <- got
	}()
	return l.Addr().String(), out
}

// TestSendNeeds8BITMIME: 8-bit data to a server without 8BITMIME is
// refused before MAIL (RFC 6152 §3), and the client says QUIT.
func TestSendNeeds8BITMIME(t *testing.T) {
	addr, lines := scripted(t, "220 old.test ESMTP\r\n", "250-old.test\r\n250 SIZE 1000\r\n", "250-old.test\r\n250 SIZE 1000\r\n", "221 bye\r\n")
	c := &Client{Hostname: "mx.test", Timeout: 5 * time.Second}
	_, err := c.Send(context.Background(), addr, Message{From: "a@b.test", To: []string{"c@d.test"}, EightBit: true, Body: strings.NewReader("x")})
	var re *Error
	if !errors.As(err, &re) || re.Stage != "MAIL" || !strings.Contains(re.Error(), "8BITMIME") {
		t.Fatalf("err = %v", err)
	}
	got := <-lines
	if strings.Join(got, "|") != "EHLO mx.test|EHLO mx.test|QUIT" {
		t.Errorf("client sent %q", got)
	}
}

// TestSendGreetingRefused: a 554 greeting is the far server's reply.
func TestSendGreetingRefused(t *testing.T) {
	addr, _ := scripted(t, "554 5.7.1 go away\r\n")
	_, err := (&Client{Timeout: 5 * time.Second}).Send(context.Background(), addr, Message{To: []string{"c@d.test"}, Body: strings.NewReader("x")})
	var re *Error
	if !errors.As(err, &re) || re.Stage != "connect" || re.Reply == nil || re.Reply.Code != 554 || re.Reply.Message != "5.7.1 go away" {
		t.Fatalf("err = %v", err)
	}
}

// TestSendDataAfterSTARTTLSReply: octets after the 220 to STARTTLS and
// before the handshake end the release (a response injection).
func TestSendDataAfterSTARTTLSReply(t *testing.T) {
	addr, _ := scripted(t, "220 x ESMTP\r\n", "250-x\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n")
	_, err := (&Client{Timeout: 5 * time.Second}).Send(context.Background(), addr, Message{To: []string{"c@d.test"}, Body: strings.NewReader("x")})
	var re *Error
	if !errors.As(err, &re) || re.Stage != "STARTTLS" || !strings.Contains(re.Error(), "before TLS") {
		t.Fatalf("err = %v", err)
	}
}

type sink struct{ got chan string }

func (s sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return s, nil }
func (sink) Reset()                                            {}
func (sink) Logout() error                                     { return nil }
func (sink) Mail(string, *gosmtp.MailOptions) error            { return nil }
func (sink) Rcpt(string, *gosmtp.RcptOptions) error            { return nil }
func (s sink) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.got <- string(b)
	return err
}

// TestSendSTARTTLSVerified: with the far server's certificate trusted the
// release goes over verified TLS, the data dot-stuffed and unstuffed
// intact.
func TestSendSTARTTLSVerified(t *testing.T) {
	serverTLS, clientTLS := testsupport.TLSPair(t, "localhost")
	s := sink{got: make(chan string, 1)}
	srv := gosmtp.NewServer(s)
	srv.Domain = "localhost"
	srv.TLSConfig = serverTLS
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l := testsupport.Listen(t)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	c := &Client{Hostname: "mx.test", Timeout: 5 * time.Second, RootCAs: clientTLS.RootCAs}
	body := "Subject: x\r\n\r\n.dot\r\nend\r\n"
	res, err := c.Send(context.Background(), "localhost:"+port, Message{From: "a@b.test", To: []string{"c@d.test"}, Body: strings.NewReader(body)})
	if err != nil || res.TLS == "" {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	if got := <-s.got; got != body {
		t.Errorf("far server got %q", got)
	}
	// Someone else's root: refused.
	c.RootCAs = x509.NewCertPool()
	if _, err := c.Send(context.Background(), "localhost:"+port, Message{To: []string{"c@d.test"}, Body: strings.NewReader(body)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted: %v", err)
	}
}
