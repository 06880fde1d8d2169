package smtp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

// isPrintableASCII reports whether s holds only SP through '~'.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestControlCharsInCommandRefused: a command line holding NUL, a bare CR
// or another control (HTAB aside) gets 501 5.5.2, whatever the command, and
// nothing of it is echoed or executed (RFC 5321 §4.1.1.1, §2.3.8).
func TestControlCharsInCommandRefused(t *testing.T) {
	for _, tc := range []struct {
		setup []step
		cmd   string
	}{
		{nil, "HELO \x00evil\x00"},
		{nil, "EHLO \x00"},
		{nil, "EHLO a\rb"},
		{nil, "HELO a\x1bb"},
		{nil, "HELO a\x7fb"},
		{nil, "NO\x00OP"},
		{nil, "NOOP\rRSET"},
		{nil, "\x00"},
		{nil, "EHLO c\r"}, // "EHLO c\r\r\n": a bare CR before the CRLF
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a\x00@b>"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<x@y>\x0b"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<x\x01@y>"},
	} {
		t.Run(fmt.Sprintf("%q", tc.cmd), func(t *testing.T) {
			t.Parallel()
			be := newBackend()
			c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
			runSteps(t, c, tc.setup)
			r := c.Cmd(tc.cmd, "501 5.5.2 Error: control character in command")
			for _, l := range r {
				if !isPrintableASCII(l) {
					t.Fatalf("reply %q echoes the client", l)
				}
			}
			c.Cmd("NOOP", "250 2.0.0 Ok")
			mails := 0
			for _, st := range tc.setup {
				if strings.HasPrefix(st.send, "MAIL") {
					mails++
				}
			}
			if calls := be.mailCalls(); len(calls) != mails {
				t.Fatalf("MAIL executed: %q", calls)
			}
		})
	}
}

// TestControlCharsCountAsErrors: the refusals count toward MaxErrors.
func TestControlCharsCountAsErrors(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxErrors = 2
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("HELO \x00", "501 5.5.2 *")
	c.Send("NOOP\x00\r\n")
	c.ExpectReply("501 5.5.2 *")
	c.ExpectReply("421 4.7.0 mx.test Too many errors, closing connection (conn *)")
	c.ExpectClosed()
}

// TestHeloNameNotEchoedRaw: HTAB and 8-bit octets are not refused in a
// HELO name, but neither the greeting nor the envelope (and so the
// Received header) carries them: they become '?', as Postfix does.
func TestHeloNameNotEchoedRaw(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("HELO h\xc3\xa9llo\tx\xff", "250 mx.test greets h??llo?x?")
	r := c.Cmd("EHLO \xe2\x82\xac.example", "250 AUTH PLAIN LOGIN")
	if r[0] != "250-mx.test greets ???.example" {
		t.Fatalf("EHLO greeting %q", r[0])
	}
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
	if h := be.messages()[0].env.Helo; h != "???.example" {
		t.Fatalf("envelope HELO %q", h)
	}
}

// TestBackendReplyNotEchoedRaw: a backend refusal that quotes client text
// (as the router quotes a foreign domain) reaches the client as printable
// ASCII.
func TestBackendReplyNotEchoedRaw(t *testing.T) {
	be := newBackend()
	be.rcptErr = map[string]error{
		"x@ü.de": &Error{Code: 550, Enhanced: "5.7.1", Message: "Relay access denied: ü.de\r\n250 is not local"},
	}
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b> SMTPUTF8", "250 *")
	c.Cmd("RCPT TO:<x@ü.de>", "550 5.7.1 Relay access denied: ??.de??250 is not local")
	c.Cmd("NOOP", "250 2.0.0 Ok")
}

// FuzzReplyText runs arbitrary client transcripts against a backend whose
// refusals quote the client, and checks that no reply ever holds an octet
// outside printable ASCII: every line is printable text ended by CRLF.
func FuzzReplyText(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"HELO \x00evil\x00\r\nEHLO \x00\r\nQUIT\r\n",
		"EHLO h\xc3\xa9\r\nHELO \xff\xfe\tx\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<\x00@b>\r\nMAIL FROM:<jö@b> SMTPUTF8\r\nRCPT TO:<quote\x7f@ü.de>\r\nRCPT TO:<quote@ü.de>\r\n",
		"EHLO a\rb\r\nNOOP\r\r\nRSET\x00\r\nVRFY \x1b[31m\r\nHELP \x85\r\n",
		"EHLO c\r\nMAIL FROM:<a@b> X\x80=1\r\nAUTH \xffPLAIN\r\nBDAT \x00\r\n",
	} {
		f.Add([]byte(s))
	}
	watch := &panicWatch{}
	be := &quotingBackend{discardBackend{newBackend()}}
	srv := &Server{
		Hostname:        "mx.test",
		Backend:         be,
		Logger:          slog.New(watch),
		AuthEnabled:     true,
		MaxMessageBytes: 1000,
		MaxErrors:       5,
	}
	addr := testsupport.Serve(f, srv, ErrServerClosed)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := watch.exchange(t, addr, in)
		rest := string(out)
		for rest != "" {
			l, r, ok := strings.Cut(rest, "\r\n")
			if !ok {
				if testsupport.IsReset(err) {
					return // cut short by the reset
				}
				t.Fatalf("reply not ended by CRLF: %q", rest)
			}
			if !isPrintableASCII(l) {
				t.Fatalf("reply line %q holds octets outside printable ASCII", l)
			}
			rest = r
		}
	})
}

// quotingBackend refuses recipients and senders holding "quote" with a
// text that quotes them, as the router quotes a foreign domain.
type quotingBackend struct{ discardBackend }

func (b *quotingBackend) Mail(ctx context.Context, env *Envelope) error {
	if strings.Contains(env.From, "quote") {
		return &Error{Code: 550, Enhanced: "5.7.1", Message: "Sender refused: " + env.From + " via " + env.Helo}
	}
	return nil
}

func (b *quotingBackend) Rcpt(ctx context.Context, env *Envelope, to string) error {
	if strings.Contains(to, "quote") {
		return &Error{Code: 550, Enhanced: "5.7.1", Message: "Relay access denied: " + to}
	}
	return nil
}
