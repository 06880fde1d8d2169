package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postoffice/internal/testsupport"
)

func mailTo(toHeader, subject string) string {
	return "From: app@example.com\r\nTo: " + toHeader + "\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
}

// TestAPITagsOverSMTPFindEachTestsMail: without a users file, mail to
// a+t1@ and b+t2@ over real SMTP lands in the one mailbox, and tag:t1
// finds only the first; a Bcc recipient's tag (only in the envelope)
// finds its message too; a wait for a tag returns the mail sent after it
// started.
func TestAPITagsOverSMTPFindEachTestsMail(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	p := start(t, "", "--http-addr", "127.0.0.1:0")
	smtpAddr := p.Addr("smtp")
	c := newWebClient(t, p)
	first := sendRaw(t, smtpAddr, "app@example.com", []string{"a+t1@x.test"}, mailTo("a+t1@x.test", "for t1"))
	second := sendRaw(t, smtpAddr, "app@example.com", []string{"b+t2@x.test", "hidden+t3@x.test"}, mailTo("b+t2@x.test", "for t2, bcc t3"))
	for _, tc := range []struct{ q, want string }{
		{"tag:t1", first},
		{"tag:T1", first},
		{"tag:t2", second},
		{"tag:t3", second},
		{"tag:t", ""},
	} {
		code, ids := apiListIDs(t, c, "user", tc.q)
		if code != 200 || strings.Join(ids, ",") != tc.want {
			t.Errorf("q=%s: %d %v, want [%s]", tc.q, code, ids, tc.want)
		}
	}
	// The stored copy names both envelope recipients after the trace.
	eml, err := os.ReadFile(filepath.Join(p.dir, "user", "new", second+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	trace, _ := stripTrace(t, eml)
	if !strings.HasSuffix(trace, "X-Original-To: b+t2@x.test\r\nX-Original-To: hidden+t3@x.test\r\n") {
		t.Errorf("trace = %q, want one X-Original-To per recipient after Received", trace)
	}

	// A wait started before the mail is sent gets it.
	got := make(chan apiMessage, 1)
	go func() {
		code, m := apiWait(t, c, "user", url.Values{"q": {"tag:t4"}, "timeout": {"30s"}})
		if code != 200 {
			t.Errorf("wait tag:t4: %d", code)
		}
		got <- m
	}()
	fourth := sendRaw(t, smtpAddr, "app@example.com", []string{"d+t4@x.test"}, mailTo("d+t4@x.test", "for t4"))
	if m := <-got; m.ID != fourth || m.Subject != "for t4" {
		t.Fatalf("wait = %+v, want %s", m, fourth)
	}
	// And the next one after it, sent before the second wait starts.
	fifth := sendRaw(t, smtpAddr, "app@example.com", []string{"d+t4@x.test"}, mailTo("d+t4@x.test", "t4 again"))
	if code, m := apiWait(t, c, "user", url.Values{"q": {"tag:t4"}, "after": {fourth}, "timeout": {"30s"}}); code != 200 || m.ID != fifth {
		t.Fatalf("wait after=%s: %d %+v, want %s", fourth, code, m, fifth)
	}
}

// TestAPITagsWithUsersFileDoNotLeakAcrossUsers: with a users file one
// stored file is shared by the mailboxes of its recipients, so it names
// no envelope recipient: bob's copy of a mail Bcc'd to alice+t1 does not
// show alice's address, and tag:t1 finds nothing in bob's mailbox. Mail
// whose recipients all have alice's mailbox names them, for alice only.
func TestAPITagsWithUsersFileDoNotLeakAcrossUsers(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	path := usersFile(t, map[string]string{"alice": "a-pass", "bob": "b-pass"})
	p := start(t, "", "--users-file", path, "--auth-delay", "0s", "--http-addr", "127.0.0.1:0")
	smtpAddr := p.Addr("smtp")
	shared := sendRaw(t, smtpAddr, "app@example.com", []string{"alice+t1@x.test", "bob+t2@x.test"}, mailTo("undisclosed-recipients:;", "shared"))
	own := sendRaw(t, smtpAddr, "app@example.com", []string{"alice+t5@x.test", "alice+t6@x.test"}, mailTo("undisclosed-recipients:;", "alice only"))
	eml, err := os.ReadFile(filepath.Join(p.dir, "bob", "new", shared+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(eml), "alice") || strings.Contains(string(eml), "X-Original-To") {
		t.Fatalf("bob's copy names another recipient:\n%s", eml)
	}
	bob := newWebClient(t, p)
	if code := bob.login("bob", "b-pass"); code != 200 {
		t.Fatalf("bob login: %d", code)
	}
	if code, ids := apiListIDs(t, bob, "bob", "tag:t1"); code != 200 || len(ids) != 0 {
		t.Errorf("bob tag:t1: %d %v, want nothing", code, ids)
	}
	if code, _ := apiListIDs(t, bob, "alice", "tag:t5"); code != 404 {
		t.Errorf("bob searching alice's mailbox: %d, want 404", code)
	}
	alice := newWebClient(t, p)
	if code := alice.login("alice", "a-pass"); code != 200 {
		t.Fatalf("alice login: %d", code)
	}
	for _, q := range []string{"tag:t5", "tag:t6"} {
		if code, ids := apiListIDs(t, alice, "alice", q); code != 200 || len(ids) != 1 || ids[0] != own {
			t.Errorf("alice %s: %d %v, want [%s]", q, code, ids, own)
		}
	}
	if code, ids := apiListIDs(t, alice, "alice", "tag:t2"); code != 200 || len(ids) != 0 {
		t.Errorf("alice tag:t2 (bob's tag): %d %v, want nothing", code, ids)
	}
}

// TestAPIDeleteByQueryRefusedWhilePOP3SessionHoldsLock: a real POP3
// login holds the maildrop; DELETE ?q= answers 409 and deletes nothing;
// after QUIT it deletes exactly the matches.
func TestAPIDeleteByQueryRefusedWhilePOP3SessionHoldsLock(t *testing.T) {
	p := start(t, "", "--http-addr", "127.0.0.1:0")
	smtpAddr := p.Addr("smtp")
	for _, rcpt := range []string{"x+gone@x.test", "x+gone@x.test", "x+kept@x.test"} {
		sendRaw(t, smtpAddr, "app@example.com", []string{rcpt}, mailTo(rcpt, "m"))
	}
	c := newWebClient(t, p)
	pc := testsupport.Dial(t, p.Addr("pop3"))
	pc.Expect("+OK*")
	pc.Send("USER user\r\nPASS pass\r\n")
	pc.Expect("+OK*")
	pc.Expect("+OK maildrop locked and ready*")
	var out struct {
		Deleted int `json:"deleted"`
	}
	if code := c.do("DELETE", "/api/v1/mailboxes/user/messages?q=tag:gone", "", &out); code != 409 {
		t.Fatalf("DELETE while POP3 holds the lock: %d, want 409", code)
	}
	if n := len(mailFiles(t, p.dir, "user")); n != 3 {
		t.Fatalf("%d files left, want 3", n)
	}
	pc.Send("QUIT\r\n")
	pc.Expect("+OK*")
	// The POP3 server releases the lock before it answers QUIT.
	if code := c.do("DELETE", "/api/v1/mailboxes/user/messages?q=tag:gone", "", &out); code != 200 || out.Deleted != 2 {
		t.Fatalf("DELETE after QUIT: %d %+v, want 200 {deleted: 2}", code, out)
	}
	if _, ids := apiListIDs(t, c, "user", ""); len(ids) != 1 {
		t.Fatalf("left %v, want only the tag:kept one", ids)
	}
}
