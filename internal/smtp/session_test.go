package smtp

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"postoffice/internal/netpolicy"
	"postoffice/internal/testsupport"
)

// TestIssueSession replays the README's worked session verbatim.
func TestIssueSession(t *testing.T) {
	be := newBackend()
	addr := testsupport.Serve(t, testServer(t, be), ErrServerClosed)
	c := dialGreeted(t, addr)
	c.Cmd("HELO client.example.com", "250 mx.test greets client.example.com")
	c.Cmd("MAIL FROM:<alice@example.com>", "250 2.1.0 Ok")
	c.Cmd("RCPT TO:<bob@example.com>", "250 2.1.5 Ok")
	c.Cmd("RCPT TO:<carol@example.com>", "250 2.1.5 Ok")
	c.Cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.Send("Subject: Test Email\r\nHello Bob,\r\n..a line that starts with a dot\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	c.Cmd("QUIT", "221 2.0.0 Bye")
	c.ExpectClosed()

	msgs := be.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}
	m := msgs[0]
	if want := "Subject: Test Email\r\nHello Bob,\r\n.a line that starts with a dot\r\n"; m.data != want {
		t.Errorf("stored %q, want %q", m.data, want)
	}
	if m.env.From != "alice@example.com" || strings.Join(m.env.To, ",") != "bob@example.com,carol@example.com" {
		t.Errorf("envelope %+v", m.env)
	}
	if m.env.Helo != "client.example.com" || m.env.ESMTP || m.env.Body != "7BIT" || m.env.Chunked || m.env.TLS != nil {
		t.Errorf("envelope %+v", m.env)
	}
	if m.env.Conn.ID == "" || !m.env.Conn.RemoteIP.IsLoopback() {
		t.Errorf("conn info %+v", m.env.Conn)
	}
}

func TestEHLO(t *testing.T) {
	addr := testsupport.Serve(t, testServer(t, newBackend()), ErrServerClosed)
	c := dialGreeted(t, addr)
	lines := c.Cmd("EHLO client.example.com", "250 AUTH PLAIN LOGIN")
	want := []string{
		"250-mx.test greets client.example.com",
		"250-PIPELINING",
		"250-SIZE 26214400",
		"250-8BITMIME",
		"250-ENHANCEDSTATUSCODES",
		"250-SMTPUTF8",
		"250-CHUNKING",
		"250-BINARYMIME",
		"250 AUTH PLAIN LOGIN",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("EHLO reply\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestEHLONoAuthWhenDisabled(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.AuthEnabled = false
	srv.MaxMessageBytes = 1000
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	lines := c.Cmd("EHLO x", "250 BINARYMIME")
	if !strings.Contains(strings.Join(lines, "\n"), "SIZE 1000") {
		t.Errorf("no SIZE 1000 in %q", lines)
	}
	c.Cmd("AUTH PLAIN", "502 5.5.1 *")
}

// step is one command and the expected reply pattern.
type step struct{ send, want string }

func runSteps(t *testing.T, c *testsupport.Conn, steps []step) {
	t.Helper()
	for _, s := range steps {
		c.Cmd(s.send, s.want)
	}
}

// TestSequence checks every command in every state, with the bad sequences
// answered 503 (RFC 5321 §4.1.4).
func TestSequence(t *testing.T) {
	const (
		helo = "EHLO client"
		mail = "MAIL FROM:<a@example.com>"
		rcpt = "RCPT TO:<b@example.com>"
	)
	// States, as the steps that reach them.
	states := map[string][]step{
		"connected":   nil,
		"greeted":     {{helo, "250 *"}},
		"helo":        {{"HELO client", "250 mx.test greets client"}},
		"mail":        {{helo, "250 *"}, {mail, "250 2.1.0 Ok"}},
		"rcpt":        {{helo, "250 *"}, {mail, "250 2.1.0 Ok"}, {rcpt, "250 2.1.5 Ok"}},
		"after data":  {{helo, "250 *"}, {mail, "250 *"}, {rcpt, "250 *"}, {"DATA", "354 *"}, {"x\r\n.", "250 2.0.0 Ok: queued as *"}},
		"after rset":  {{helo, "250 *"}, {mail, "250 *"}, {rcpt, "250 *"}, {"RSET", "250 2.0.0 Ok"}},
		"after rehlo": {{helo, "250 *"}, {mail, "250 *"}, {rcpt, "250 *"}, {"EHLO again", "250 *"}},
	}
	type cmdCase struct {
		cmd  string
		want map[string]string // state -> pattern; "*" key for the others
	}
	cases := []cmdCase{
		{"HELO x", map[string]string{"*": "250 mx.test greets x"}},
		{"EHLO x", map[string]string{"*": "250 AUTH PLAIN LOGIN"}},
		{mail, map[string]string{
			"connected": "250 2.1.0 Ok", // no HELO needed by default (TestRequireHelo)
			"mail":      "503 5.5.1 Error: nested MAIL command",
			"rcpt":      "503 5.5.1 Error: nested MAIL command",
			"*":         "250 2.1.0 Ok",
		}},
		{rcpt, map[string]string{
			"mail": "250 2.1.5 Ok",
			"rcpt": "250 2.1.5 Ok",
			"*":    "503 5.5.1 Error: need MAIL command",
		}},
		{"DATA", map[string]string{
			"rcpt": "354 End data with <CR><LF>.<CR><LF>",
			"*":    "503 5.5.1 Error: need RCPT command",
		}},
		{"BDAT 0 LAST", map[string]string{
			"rcpt": "250 2.0.0 Ok: queued as *",
			"*":    "503 5.5.1 Error: need RCPT command",
		}},
		{"RSET", map[string]string{"*": "250 2.0.0 Ok"}},
		{"NOOP", map[string]string{"*": "250 2.0.0 Ok"}},
		{"NOOP with argument", map[string]string{"*": "250 2.0.0 Ok"}},
		{"VRFY user", map[string]string{"*": "252 2.5.0 *"}},
		{"EXPN list", map[string]string{"*": "502 5.5.1 *"}},
		{"HELP", map[string]string{"*": "214 2.0.0 *"}},
		{"STARTTLS", map[string]string{"*": "502 5.5.1 Error: STARTTLS not available"}},
		{"AUTH PLAIN AHVzZXIAcGFzcw==", map[string]string{
			"connected": "503 5.5.1 Error: send EHLO first",
			"mail":      "503 5.5.1 Error: MAIL transaction in progress",
			"rcpt":      "503 5.5.1 Error: MAIL transaction in progress",
			"*":         "235 2.7.0 Authentication successful",
		}},
		{"FOO", map[string]string{"*": "500 5.5.2 Error: command not recognized"}},
		{"", map[string]string{"*": "500 5.5.2 Error: empty command"}},
		{"QUIT", map[string]string{"*": "221 2.0.0 Bye"}},
	}
	for _, cc := range cases {
		for state, steps := range states {
			want, ok := cc.want[state]
			if !ok {
				want = cc.want["*"]
			}
			if state == "helo" && strings.HasPrefix(cc.cmd, "AUTH") {
				want = "235 *" // AUTH after HELO is accepted too
			}
			t.Run(state+"/"+cc.cmd, func(t *testing.T) {
				t.Parallel()
				be := newBackend()
				c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
				runSteps(t, c, steps)
				if lines := c.Cmd(cc.cmd, want); strings.HasPrefix(lines[0], "354") {
					c.Cmd(".", "250 2.0.0 Ok: queued as Q1")
				}
				if cc.cmd == "QUIT" {
					c.ExpectClosed()
					return
				}
				// The session goes on.
				c.Cmd("NOOP", "250 2.0.0 Ok")
			})
		}
	}
}

// TestTransactionResets checks what RSET, HELO/EHLO and the end of DATA
// reset (RFC 5321 §4.1.4).
func TestTransactionResets(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	runSteps(t, c, []step{
		{"EHLO c", "250 *"},
		{"MAIL FROM:<a@x>", "250 *"},
		{"RCPT TO:<b@x>", "250 *"},
		{"RSET", "250 2.0.0 Ok"},
		{"RCPT TO:<b@x>", "503 5.5.1 *"},
		{"DATA", "503 5.5.1 *"},
		{"MAIL FROM:<a2@x>", "250 *"},
		{"RCPT TO:<c@x>", "250 *"},
		{"DATA", "354 *"},
		{"body\r\n.", "250 *"},
		{"RCPT TO:<b@x>", "503 5.5.1 *"},
		{"MAIL FROM:<a3@x>", "250 *"},
		{"RCPT TO:<d@x>", "250 *"},
		{"DATA", "354 *"},
		{"second\r\n.", "250 2.0.0 Ok: queued as Q2"},
	})
	msgs := be.messages()
	if len(msgs) != 2 || msgs[0].env.From != "a2@x" || msgs[0].env.To[0] != "c@x" || len(msgs[1].env.To) != 1 || msgs[1].data != "second\r\n" {
		t.Fatalf("messages %+v", msgs)
	}
}

func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		setup []step
		cmd   string
		want  string
	}{
		{nil, "HELO", "501 5.5.4 *"},
		{nil, "EHLO", "501 5.5.4 *"},
		{nil, "EHLO   ", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:a@b", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@@b>", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a..b@c>", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@-b>", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@[1.2.3]>", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL TO:<a@b>", "501 5.1.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b>x", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=-1", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=12x", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=1 SIZE=2", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> BODY=9BIT", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SMTPUTF8=yes", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> RET=FULL", "555 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=99999999999", "552 5.3.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=999999999999999999999999", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<jö@b>", "553 5.6.7 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a@b> SMTPUTF8\xff", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "MAIL FROM:<a\xff@b> SMTPUTF8", "501 5.1.7 *"},
		{[]step{{"HELO c", "250 *"}}, "MAIL FROM:<a@b> SIZE=10", "555 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<>", "501 5.1.3 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:b@c", "501 5.1.3 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT FROM:<b@c>", "501 5.1.3 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<b>", "501 5.1.3 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<b@c> NOTIFY=NEVER", "555 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}}, "RCPT TO:<bö@c>", "553 5.6.7 *"},
		{[]step{{"EHLO c", "250 *"}, {"MAIL FROM:<a@b>", "250 *"}, {"RCPT TO:<b@c>", "250 *"}}, "DATA x", "501 5.5.4 *"},
		{nil, "RSET x", "501 5.5.4 *"},
		{nil, "VRFY", "501 5.5.4 *"},
		{nil, "STARTTLS", "502 5.5.1 *"},
		{[]step{{"EHLO c", "250 *"}}, "AUTH", "501 5.5.4 *"},
		{[]step{{"EHLO c", "250 *"}}, "AUTH CRAM-MD5", "504 5.5.4 *"},
		{nil, strings.Repeat("x", 3000), "500 5.5.2 Error: line too long"},
		{nil, "NOOP " + strings.Repeat("x", 2048), "500 5.5.2 Error: line too long"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			t.Parallel()
			c := dialGreeted(t, testsupport.Serve(t, testServer(t, newBackend()), ErrServerClosed))
			runSteps(t, c, tc.setup)
			c.Cmd(tc.cmd, tc.want)
			c.Cmd("NOOP", "250 2.0.0 Ok")
		})
	}
}

// TestLineLengthLimit checks the bound: MaxLineLength octets pass, one more
// does not; a limit below 512 is raised to 512 (RFC 5321 §4.5.3.1.4).
func TestLineLengthLimit(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxLineLength = 100
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	ok := "NOOP " + strings.Repeat("x", 512-5)
	c.Cmd(ok, "250 2.0.0 Ok")
	c.Cmd(ok+"x", "500 5.5.2 *")
	c.Cmd("NOOP", "250 2.0.0 Ok")
}

func TestAcceptedPaths(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	for _, tc := range []struct{ mail, wantFrom string }{
		{"MAIL FROM:<>", ""},
		{"mail from:<a@b>", "a@b"},
		{"MAIL FROM: <a@b>", "a@b"},
		{"MAIL FROM:<@relay1,@relay2.example:a@b.example>", "a@b.example"},
		{`MAIL FROM:<"john doe"@example.com>`, `"john doe"@example.com`},
		{`MAIL FROM:<"a\"b"@example.com>`, `"a\"b"@example.com`},
		{"MAIL FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"},
		{"MAIL FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]"},
		{"MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME AUTH=<>", "a@b"},
		{"MAIL FROM:<jö@exämple.com> SMTPUTF8", "jö@exämple.com"},
		{"MAIL FROM:<a@b> body=binarymime", "a@b"},
		{"MAIL FROM:<a@b> ", "a@b"},
	} {
		c.Cmd(tc.mail, "250 2.1.0 Ok")
		c.Cmd("RSET", "250 *")
		calls := be.mailCalls()
		if got := calls[len(calls)-1]; got != tc.wantFrom {
			t.Errorf("%q: From %q, want %q", tc.mail, got, tc.wantFrom)
		}
	}
	// RCPT forms.
	c.Cmd("MAIL FROM:<a@b> SMTPUTF8", "250 *")
	c.Cmd("RCPT TO:<Postmaster>", "250 2.1.5 Ok")
	c.Cmd("RCPT TO:<postmaster@mx.test>", "250 2.1.5 Ok")
	c.Cmd("RCPT TO:<@a,@b:user@c>", "250 2.1.5 Ok")
	c.Cmd("RCPT TO:<ü@c>", "250 2.1.5 Ok")
	c.Cmd("DATA", "354 *")
	c.Cmd(".", "250 *")
	msgs := be.messages()
	if got := strings.Join(msgs[0].env.To, ","); got != "postmaster,postmaster@mx.test,user@c,ü@c" {
		t.Errorf("To = %q", got)
	}
	if !msgs[0].env.SMTPUTF8 || msgs[0].data != "" {
		t.Errorf("envelope %+v data %q", msgs[0].env, msgs[0].data)
	}
}

func TestMailParamsInEnvelope(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b> SIZE=6 BODY=8BITMIME", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("h\xe9\r\n.", "250 *")
	m := be.messages()[0]
	if m.env.Size != 6 || m.env.Body != "8BITMIME" || !m.env.ESMTP || m.env.Helo != "c" || m.data != "h\xe9\r\n" {
		t.Fatalf("envelope %+v, data %q", m.env, m.data)
	}
}

// TestBackendErrors checks that *Error replies pass as they are and other
// errors become 451 with the connection id.
func TestBackendErrors(t *testing.T) {
	be := newBackend()
	be.rcptErr = map[string]error{
		"unknown@x": &Error{Code: 550, Enhanced: "5.1.1", Message: "User unknown"},
		"broken@x":  errors.New("disk on fire"),
	}
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<unknown@x>", "550 5.1.1 User unknown")
	c.Cmd("RCPT TO:<broken@x>", "451 4.3.0 Error: local error in processing (conn *)")
	c.Cmd("DATA", "503 5.5.1 *")
	c.Cmd("RCPT TO:<ok@x>", "250 *")
	be.mu.Lock()
	be.dataErr = errors.New("queue file write error")
	be.mu.Unlock()
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "451 4.3.0 Error: local error in processing (conn *)")
	// The transaction is over after DATA, even a failed one.
	c.Cmd("RCPT TO:<ok@x>", "503 5.5.1 *")
	be.mu.Lock()
	be.dataErr = &Error{Code: 452, Enhanced: "4.3.1", Message: "Insufficient system storage"}
	be.mu.Unlock()
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<ok@x>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "452 4.3.1 Insufficient system storage")
	be.mu.Lock()
	be.mailErr = &Error{Code: 421, Enhanced: "4.7.0", Message: "go away"}
	be.mu.Unlock()
	c.Cmd("MAIL FROM:<a@b>", "421 4.7.0 go away")
	c.ExpectClosed()
	if len(be.messages()) != 0 {
		t.Fatal("message stored")
	}
}

// TestSmuggling sends the SMTP smuggling sequences (CVE-2023-51764 and
// kin) followed by a smuggled transaction: exactly one message must be
// delivered, carrying the smuggled text in its body.
func TestSmuggling(t *testing.T) {
	for _, seq := range []string{
		"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r.\r\n", "\r\n\x00.\r\n", "\n.\r", "\r\r\n.\r\r\n",
	} {
		t.Run(fmt.Sprintf("%q", seq), func(t *testing.T) {
			t.Parallel()
			be := newBackend()
			c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
			c.Cmd("EHLO c", "250 *")
			c.Cmd("MAIL FROM:<a@b>", "250 *")
			c.Cmd("RCPT TO:<x@y>", "250 *")
			c.Cmd("DATA", "354 *")
			c.Send("Subject: hi\r\n\r\nbody" + seq +
				"MAIL FROM:<evil@attacker>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n.\r\n")
			c.ExpectReply("250 2.0.0 Ok: queued as Q1")
			c.Cmd("QUIT", "221 *")
			c.ExpectClosed()
			msgs := be.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered, want 1", len(msgs))
			}
			if !strings.Contains(msgs[0].data, "MAIL FROM:<evil@attacker>\r\n") || !strings.HasSuffix(msgs[0].data, "smuggled\r\n") {
				t.Fatalf("smuggled text not in body: %q", msgs[0].data)
			}
			if calls := be.mailCalls(); len(calls) != 1 {
				t.Fatalf("MAIL calls %q", calls)
			}
		})
	}
}

// TestHostileData checks bare CR/LF, NUL, 8-bit and long lines end to end.
func TestHostileData(t *testing.T) {
	long := strings.Repeat("L", 200000)
	for _, tc := range []struct{ name, send, want string }{
		{"bare LF", "a\nb\nc\r\n.\r\n", "a\r\nb\r\nc\r\n"},
		{"bare CR", "a\rb\r\n.\r\n", "a\rb\r\n"},
		{"NUL", "a\x00b\r\n.\r\n", "a\x00b\r\n"},
		{"8-bit", "\x80\xff\xfe\r\n.\r\n", "\x80\xff\xfe\r\n"},
		{"long line", long + "\r\n.\r\n", long + "\r\n"},
		{"dot lines", ".\n..\r\n...x\r\n.\r\n", ".\r\n.\r\n..x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := newBackend()
			c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
			c.Cmd("EHLO c", "250 *")
			c.Cmd("MAIL FROM:<a@b>", "250 *")
			c.Cmd("RCPT TO:<x@y>", "250 *")
			c.Cmd("DATA", "354 *")
			c.Send(tc.send)
			c.ExpectReply("250 2.0.0 Ok: queued as Q1")
			if got := be.messages()[0].data; got != tc.want {
				t.Fatalf("stored %q, want %q", trunc(got), trunc(tc.want))
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}

func TestOversizeData(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.MaxMessageBytes = 1000
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	// Much more than the limit, streamed: the server drains to the end.
	c.Send(strings.Repeat("0123456789012345678\r\n", 10000) + ".\r\n")
	c.ExpectReply("552 5.3.4 Message size exceeds fixed limit")
	if n := len(be.messages()); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	if errs := be.errs(); len(errs) != 1 || !errors.Is(errs[0], ErrMessageTooBig) {
		t.Fatalf("backend saw %v", errs)
	}
	// The session goes on; exactly the limit is fine.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send(strings.Repeat("012345678\r\n", 100)[:998] + "\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
}

// TestOneByteWrites sends a whole session one octet per write.
func TestOneByteWrites(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	session := "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n"
	for i := 0; i < len(session); i++ {
		c.Send(session[i : i+1])
	}
	for _, want := range []string{"250 AUTH *", "250 2.1.0 *", "250 2.1.5 *", "354 *", "250 2.0.0 Ok: queued as Q1", "221 *"} {
		c.ExpectReply(want)
	}
	if got := be.messages()[0].data; got != "hello\r\n.dot\r\n" {
		t.Fatalf("stored %q", got)
	}
}

// TestPipelining sends a whole transaction in one write (RFC 2920): the
// replies come in order.
func TestPipelining(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, be), ErrServerClosed))
	c.Send("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<bad>\r\nRCPT TO:<z@y>\r\nDATA\r\n")
	for _, want := range []string{"250 AUTH *", "250 2.1.0 *", "250 2.1.5 *", "501 5.1.3 *", "250 2.1.5 *", "354 *"} {
		c.ExpectReply(want)
	}
	c.Send("body\r\n.\r\nMAIL FROM:<a2@b>\r\nRCPT TO:<x@y>\r\nBDAT 5 LAST\r\nabcdeRSET\r\nQUIT\r\n")
	for _, want := range []string{"250 2.0.0 Ok: queued as Q1", "250 2.1.0 *", "250 2.1.5 *", "250 2.0.0 Ok: queued as Q2", "250 2.0.0 Ok", "221 *"} {
		c.ExpectReply(want)
	}
	msgs := be.messages()
	if len(msgs) != 2 || len(msgs[0].env.To) != 2 || msgs[1].data != "abcde\r\n" || !msgs[1].env.Chunked {
		t.Fatalf("messages %+v", msgs)
	}
}

func TestMaxRecipients(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.MaxRecipients = 2
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<1@y>", "250 *")
	c.Cmd("RCPT TO:<2@y>", "250 *")
	c.Cmd("RCPT TO:<3@y>", "452 4.5.3 Error: too many recipients (conn *)")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
	if to := be.messages()[0].env.To; len(to) != 2 {
		t.Fatalf("To = %q", to)
	}
}

func TestMaxErrors(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.MaxErrors = 3
	srv.RequireHelo = true // MAIL before HELO is one of the errors
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("FOO", "500 *")
	c.Cmd("NOOP", "250 *") // successes do not reset the count
	c.Cmd("MAIL FROM:<a@b>", "503 *")
	c.Send("BAR\r\n")
	lines, err := c.ReadReply()
	if err != nil || !testsupport.Glob("500 5.5.2 Error: command not recognized (conn *)", lines[0]) {
		t.Fatalf("%q %v", lines, err)
	}
	c.ExpectReply("421 4.7.0 mx.test Too many errors, closing connection (conn *)")
	c.ExpectClosed()
}

func TestRequireAuth(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.RequireAuth = true
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "530 5.7.0 Authentication required")
	c.Cmd("AUTH PLAIN AHVzZXIAcGFzcw==", "235 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("x\r\n.", "250 *")
	if u := be.messages()[0].env.AuthUser; u != "user" {
		t.Fatalf("AuthUser %q", u)
	}
}

func TestConnectionLimit(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.Limiter = &netpolicy.Limiter{Max: 1}
	addr := testsupport.Serve(t, srv, ErrServerClosed)
	c1 := dialGreeted(t, addr)
	c2 := dial(t, addr)
	c2.ExpectReply("421 4.7.0 mx.test Too many connections, try again later")
	c2.ExpectClosed()
	c1.Cmd("QUIT", "221 *")
	c1.ExpectClosed()
	testsupport.WaitFor(t, "slot released", func() bool { return srv.Limiter.Count() == 0 })
	c3 := dialGreeted(t, addr)
	c3.Cmd("NOOP", "250 *")
}

func TestCommandTimeout(t *testing.T) {
	srv := testServer(t, newBackend())
	srv.CommandTimeout = 100 * time.Millisecond
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Send("NO") // a partial command does not extend the wait
	c.ExpectReply("421 4.4.2 mx.test Timeout exceeded, closing connection (conn *)")
	c.ExpectClosed()
}

func TestDataTimeout(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.DataTimeout = 100 * time.Millisecond
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("partial message\r\n")
	c.ExpectReply("421 4.4.2 * Timeout exceeded*")
	c.ExpectClosed()
	if len(be.messages()) != 0 {
		t.Fatal("message stored after timeout")
	}
	if errs := be.errs(); len(errs) != 1 {
		t.Fatalf("backend errors %v", errs)
	}
}

func TestDisconnectMidData(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("partial message\r\n")
	c.Close()
	testsupport.WaitFor(t, "backend error", func() bool { return len(be.errs()) == 1 })
	if err := be.errs()[0]; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("backend saw %v", err)
	}
	if len(be.messages()) != 0 {
		t.Fatal("message stored")
	}
}

func TestPanicRecovered(t *testing.T) {
	be := newBackend()
	be.mailHook = func(env *Envelope) {
		if env.From == "panic@x" {
			panic("boom")
		}
	}
	addr := testsupport.Serve(t, testServer(t, be), ErrServerClosed)
	c := dialGreeted(t, addr)
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<panic@x>", "421 4.3.0 mx.test Internal error, closing connection (conn *)")
	c.ExpectClosed()
	// The server still serves.
	c2 := dialGreeted(t, addr)
	c2.Cmd("EHLO c", "250 *")
	c2.Cmd("MAIL FROM:<ok@x>", "250 *")
}

// TestRepliesFlushedBeforePartialLine: a reply is not held back because
// part of the next command has arrived (the client may wait for it).
func TestRepliesFlushedBeforePartialLine(t *testing.T) {
	c := dialGreeted(t, testsupport.Serve(t, testServer(t, newBackend()), ErrServerClosed))
	c.Send("NOOP\r\nNO")
	c.ExpectReply("250 2.0.0 Ok")
	c.Send("OP\r\n")
	c.ExpectReply("250 2.0.0 Ok")
}
