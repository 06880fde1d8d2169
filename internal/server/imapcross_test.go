package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// webClient is a logged-in (loopback, single user) web API client.
type webClient struct {
	t    *testing.T
	s    *Server
	hc   *http.Client
	csrf string
}

func newWebClient(t *testing.T, s *Server) *webClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	w := &webClient{t: t, s: s, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	var sess struct {
		CSRF string `json:"csrf_token"`
	}
	resp, err := w.hc.Get(s.testURL("/api/v1/session"))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	w.csrf = sess.CSRF
	return w
}

// read marks message id read or unread through the web API.
func (w *webClient) read(id string, read bool) {
	w.t.Helper()
	body := `{"read":false}`
	if read {
		body = `{"read":true}`
	}
	req, _ := http.NewRequest("PATCH", w.s.testURL("/api/v1/mailboxes/user/messages/"+id), strings.NewReader(body))
	req.Header.Set("X-CSRF-Token", w.csrf)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		w.t.Fatalf("PATCH read=%v: %v %v", read, resp, err)
	}
	resp.Body.Close()
}

// isRead reports the web API's read mark of message id.
func (w *webClient) isRead(id string) bool {
	w.t.Helper()
	resp, err := w.hc.Get(w.s.testURL("/api/v1/mailboxes/user/messages/" + id))
	if err != nil || resp.StatusCode != 200 {
		w.t.Fatalf("GET message: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var m struct {
		Read bool `json:"read"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		w.t.Fatal(err)
	}
	return m.Read
}

// TestIMAPSeesWebAndPOP3Changes: one mailbox through the three readers of
// the running server. A web read/unread reaches an IDLE session as FETCH
// FLAGS; an IMAP STORE \Seen shows as read in the web API while the POP3
// UIDL stays the message id; a POP3 DELE+QUIT reaches the IDLE session as
// EXPUNGE; a web delete too.
func TestIMAPSeesWebAndPOP3Changes(t *testing.T) {
	s := opsServer(t, nil)
	var ids []string
	for _, subj := range []string{"one", "two", "three"} {
		id := s.store.NewID()
		if err := s.store.Deliver(context.Background(), id, []string{"user"}, strings.NewReader("Subject: "+subj+"\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	web := newWebClient(t, s)
	idler := testsupport.Dial(t, s.Listener("imap").Addr().String())
	idler.IMAPLogin("user", "pass")
	idler.IMAP("SELECT INBOX", "OK [READ-WRITE] *")
	idler.Send("i IDLE\r\n")
	idler.Expect("+ *")

	web.read(ids[0], true)
	idler.Expect(`* 1 FETCH (UID 1 FLAGS (\Seen))`)
	web.read(ids[0], false)
	idler.Expect(`* 1 FETCH (UID 1 FLAGS ())`)
	idler.Send("DONE\r\n")
	idler.Expect("i OK *")

	idler.IMAP(`STORE 2 +FLAGS (\Seen)`, "OK *")
	if !web.isRead(ids[1]) {
		t.Fatal("IMAP \\Seen not read in the web API")
	}
	pop := testsupport.Dial(t, s.Listener("pop3").Addr().String())
	pop.POP3Login("user", "pass")
	pop.Send("UIDL\r\n")
	pop.Expect("+OK*", "1 "+ids[0], "2 "+ids[1], "3 "+ids[2], ".")

	// While POP3 holds the maildrop, IMAP may flag but not remove.
	idler.IMAP(`STORE 3 +FLAGS (\Deleted)`, "OK *")
	idler.IMAP(`EXPUNGE`, "NO [INUSE] *")
	idler.IMAP(`MOVE 3 Archive`, "NO [INUSE] *")
	idler.IMAP(`COPY 3 Archive`, "OK *")

	idler.Send("j IDLE\r\n")
	idler.Expect("+ *")
	pop.Send("DELE 1\r\nQUIT\r\n")
	pop.Expect("+OK*", "+OK*")
	idler.Expect("* 1 EXPUNGE")
	idler.Send("DONE\r\n")
	idler.Expect("j OK *")
	// After the QUIT the expunge works.
	r := idler.IMAP(`EXPUNGE`, "OK *")
	if !r.Has("* 2 EXPUNGE") {
		t.Fatalf("EXPUNGE after POP3 QUIT: %q", r.Untagged)
	}
	r = idler.IMAP(`STATUS Archive (MESSAGES)`, "OK *")
	if !r.Has(`* STATUS "Archive" (MESSAGES 1)`) {
		t.Fatalf("Archive: %q", r.Untagged)
	}
}

// TestIMAPCrossProtocolChain is the chain over the running server:
// deliver over SMTP, an IDLE session sees EXISTS, FETCH, STORE \Seen, the
// web API shows it read and POP3 UIDL is unchanged, MOVE to Archive, POP3
// STAT no longer counts it.
func TestIMAPCrossProtocolChain(t *testing.T) {
	s := opsServer(t, nil)
	idler := testsupport.Dial(t, s.Listener("imap").Addr().String())
	idler.IMAPLogin("user", "pass")
	idler.IMAP("SELECT INBOX", "OK *")
	idler.Send("i IDLE\r\n")
	idler.Expect("+ *")

	smtp := testsupport.Dial(t, s.Listener("smtp").Addr().String())
	smtp.ExpectReply("220 *")
	smtp.Cmd("EHLO c.test", "250 *")
	smtp.Cmd("MAIL FROM:<a@example.com>", "250 *")
	smtp.Cmd("RCPT TO:<user@example.com>", "250 *")
	smtp.Cmd("DATA", "354 *")
	queued := smtp.Cmd("Subject: chain\r\n\r\nlinked\r\n.", "250 2.0.0 Ok: queued as *").Last()
	id := strings.Fields(queued)[5]
	idler.Expect("* 1 EXISTS")
	idler.Send("DONE\r\n")
	idler.Expect("i OK *")

	r := idler.IMAP("FETCH 1 (BODY.PEEK[TEXT])", "OK *")
	if !r.Has("* 1 FETCH (UID 1 BODY[TEXT] {8}\r\nlinked\r\n)") {
		t.Fatalf("FETCH: %q", r.Untagged)
	}
	idler.IMAP(`STORE 1 +FLAGS (\Seen)`, "OK *")
	if !newWebClient(t, s).isRead(id) {
		t.Fatal("not read in the web API")
	}
	pop := testsupport.Dial(t, s.Listener("pop3").Addr().String())
	pop.POP3Login("user", "pass")
	pop.Send("UIDL\r\n")
	pop.Expect("+OK*", "1 "+id, ".")
	pop.Send("QUIT\r\n")
	pop.Expect("+OK*")

	// The lock may still be let go by the server just after +OK: MOVE
	// waits a moment for it.
	idler.IMAP("MOVE 1 Archive", "OK *")
	pop = testsupport.Dial(t, s.Listener("pop3").Addr().String())
	pop.POP3Login("user", "pass")
	pop.Send("STAT\r\n")
	pop.Expect("+OK 0 0")
}
