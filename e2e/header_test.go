package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

// seedSession runs the original design's SMTP session, verbatim, over a raw
// socket, checking every reply, and returns the queue id. Its message has
// no blank line after "Subject: Test Email".
func seedSession(t *testing.T, p *proc) string {
	t.Helper()
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 mx.test ESMTP*")
	c.Send("HELO client.example.com\r\n")
	c.ExpectReply("250 mx.test greets client.example.com")
	c.Send("MAIL FROM:<alice@example.com>\r\n")
	c.ExpectReply("250 2.1.0 Ok")
	c.Send("RCPT TO:<bob@example.com>\r\n")
	c.ExpectReply("250 2.1.5 Ok")
	c.Send("RCPT TO:<carol@example.com>\r\n")
	c.ExpectReply("250 2.1.5 Ok")
	c.Send("DATA\r\n")
	c.ExpectReply("354 End data with <CR><LF>.<CR><LF>")
	c.Send("Subject: Test Email\r\nHello Bob,\r\n..a line that starts with a dot\r\n.\r\n")
	id := queuedRe.FindStringSubmatch(c.ExpectReply("250 2.0.0 Ok: queued as *").Last())[1]
	c.Send("QUIT\r\n")
	c.ExpectReply("221 2.0.0 Bye")
	return id
}

// TestSeedHeaderEndsAtFirstBodyLine: one rule for where the header ends (a
// line that is neither a header field nor a continuation ends it, package
// mailheader) gives the seed's message the subject "Test Email" in POP3
// TOP, `postoffice mailbox show` and the web inbox alike. TOP n 0 sends
// the header fields, then the blank line RFC 1939 §7 has TOP send, which
// the message itself lacks; RETR still sends the message as stored.
func TestSeedHeaderEndsAtFirstBodyLine(t *testing.T) {
	p := start(t, "")
	id := seedSession(t, p)
	eml, err := os.ReadFile(mailFiles(t, p.dir, "user")[0])
	if err != nil {
		t.Fatal(err)
	}
	trace, _ := stripTrace(t, eml)

	c := login(t, p.Addr("pop3"), "user", "pass")
	for _, tc := range []struct{ cmd, want string }{
		// RFC 1939 §7: the headers, the blank line separating them from
		// the body, then n lines of the body.
		{"TOP 1 0", trace + "Subject: Test Email\r\n\r\n"},
		{"TOP 1 1", trace + "Subject: Test Email\r\n\r\nHello Bob,\r\n"},
		{"TOP 1 9", trace + "Subject: Test Email\r\n\r\nHello Bob,\r\n.a line that starts with a dot\r\n"},
		{"RETR 1", string(eml)},
	} {
		c.Send(tc.cmd + "\r\n")
		c.Expect("+OK*")
		if got := c.MultilineText(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cmd, got, tc.want)
		}
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")

	code, out := runCLI(t, "", append([]string{"mailbox", "show", "--mailbox-dir", p.dir, "user"}, storeArgs(t, p.dir)...)...)
	if code != 0 || !strings.Contains(out, "Test Email") || !strings.Contains(out, id) {
		t.Errorf("mailbox show: %d\n%s", code, out)
	}

	base := "http://" + p.Addr("http") + "/api/v1/mailboxes/user/messages"
	var list struct {
		Messages []struct{ ID, Subject string }
	}
	getJSON(t, base, &list)
	if len(list.Messages) != 1 || list.Messages[0].Subject != "Test Email" {
		t.Errorf("web listing: %+v", list)
	}
	var view struct{ Subject, Text string }
	getJSON(t, base+"/"+id, &view)
	if view.Subject != "Test Email" || !strings.HasPrefix(view.Text, "Hello Bob,") {
		t.Errorf("web view: %+v", view)
	}
}

// getJSON GETs url (from loopback, no login needed without a users file)
// and decodes the 200 answer into out.
func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
