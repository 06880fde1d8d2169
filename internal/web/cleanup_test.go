package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// deleteQuery sends DELETE .../messages?q= (no body) and returns the
// status and the count answered.
func (c *client) deleteQuery(mailbox, rawQuery string) (int, int, string) {
	c.e.t.Helper()
	path := "/api/v1/mailboxes/" + mailbox + "/messages"
	if rawQuery != "" {
		path += "?" + rawQuery
	}
	var out struct {
		Deleted int `json:"deleted"`
	}
	resp, b := c.do("DELETE", path, nil, true)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &out); err != nil {
			c.e.t.Fatalf("DELETE %s: %v in %s", path, err, b)
		}
	}
	return resp.StatusCode, out.Deleted, string(b)
}

func (c *client) listIDs(mailbox string) []string {
	c.e.t.Helper()
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/"+mailbox+"/messages?per_page=500", nil, 200, &l)
	var ids []string
	for _, m := range l.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestDeleteByQueryDeletesOnlyMatches(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	e.deliver("user", tagged("gone", "one"))
	e.deliver("user", tagged("gone", "two"))
	keep := e.deliver("user", tagged("kept", "three"))
	code, n, body := c.deleteQuery("user", "q=tag:gone")
	if code != 200 || n != 2 {
		t.Fatalf("DELETE ?q=tag:gone = %d %s, want 200 {\"deleted\": 2}", code, body)
	}
	if ids := c.listIDs("user"); len(ids) != 1 || ids[0] != keep {
		t.Fatalf("left %v, want only %s", ids, keep)
	}
	// Nothing matches: 0.
	if code, n, body := c.deleteQuery("user", "q=tag:gone"); code != 200 || n != 0 {
		t.Fatalf("second DELETE = %d %s, want 0", code, body)
	}
	// A bad query deletes nothing.
	if code, _, body := c.deleteQuery("user", "q=nosuch:field"); code != 400 || !strings.Contains(body, "q:") {
		t.Fatalf("bad query = %d %s, want 400", code, body)
	}
	if ids := c.listIDs("user"); len(ids) != 1 {
		t.Fatalf("left %v after a bad query", ids)
	}
}

func TestDeleteWithoutQueryOrBodyDeletesAll(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	for range 3 {
		e.deliver("user", tagged("any", "x"))
	}
	e.deliver("other", tagged("any", "in another mailbox"))
	if code, n, body := c.deleteQuery("user", ""); code != 200 || n != 3 {
		t.Fatalf("DELETE without q = %d %s, want 3", code, body)
	}
	if ids := c.listIDs("user"); len(ids) != 0 {
		t.Fatalf("left %v", ids)
	}
	if ids := c.listIDs("other"); len(ids) != 1 {
		t.Fatalf("other mailbox: %v, want its message kept", ids)
	}
}

func TestDeleteByQueryWhilePOP3HoldsTheLockIs409AndDeletesNothing(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	for range 3 {
		e.deliver("user", tagged("locked", "x"))
	}
	md, err := e.st.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := c.deleteQuery("user", "q=tag:locked")
	if code != http.StatusConflict || !strings.Contains(body, "POP3") {
		t.Fatalf("DELETE while locked = %d %s, want 409", code, body)
	}
	if code, _, _ := c.deleteQuery("user", ""); code != http.StatusConflict {
		t.Fatalf("DELETE all while locked = %d, want 409", code)
	}
	md.Close()
	if ids := c.listIDs("user"); len(ids) != 3 {
		t.Fatalf("left %v, want all 3 kept", ids)
	}
	if code, n, _ := c.deleteQuery("user", "q=tag:locked"); code != 200 || n != 3 {
		t.Fatalf("DELETE after the session = %d %d, want 3", code, n)
	}
}

func TestDeleteQueryAndBodyTogetherIs400(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	id := e.deliver("user", tagged("both", "x"))
	resp, b := c.do("DELETE", "/api/v1/mailboxes/user/messages?q=tag:both", map[string]any{"ids": []string{id}}, true)
	if resp.StatusCode != 400 {
		t.Fatalf("q and body = %d %s, want 400", resp.StatusCode, b)
	}
	// The body form still answers ids.
	var out struct {
		Deleted  []string `json:"deleted"`
		NotFound []string `json:"not_found"`
	}
	c.mustJSON("DELETE", "/api/v1/mailboxes/user/messages", map[string]any{"ids": []string{id}}, 200, &out)
	if len(out.Deleted) != 1 || out.Deleted[0] != id {
		t.Fatalf("body form = %+v", out)
	}
}

func TestTagSearch(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	t1 := e.deliver("user", simple("app@example.com", "A+T1@example.com", "to t1", "x"))
	t10 := e.deliver("user", simple("app@example.com", "a+t10@example.com", "to t10", "x"))
	// A Bcc recipient is only in the envelope: the SMTP backend names it
	// in X-Original-To.
	bcc := e.deliver("user", "X-Original-To: someone@example.com\r\nX-Original-To: hidden+secret@example.com\r\n"+
		simple("app@example.com", "someone@example.com", "bcc", "x"))
	// Received ... for <...> names the one recipient.
	rcvd := e.deliver("user", "Received: from a (b [127.0.0.1])\r\n\tby mx.test (Postoffice) with SMTP id X\r\n\tfor <c+viafor@example.com>; Mon, 06 May 2024 10:00:00 +0000\r\n"+
		simple("app@example.com", "someone@example.com", "for clause", "x"))
	cc := e.deliver("user", "Cc: Carol <carol+incc@example.com>\r\n"+simple("app@example.com", "someone@example.com", "cc", "x"))
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"tag:t1", []string{t1}},
		{"tag:T1", []string{t1}},
		{"tag:t10", []string{t10}},
		{"tag:t", nil},
		{"tag:secret", []string{bcc}},
		{"tag:viafor", []string{rcvd}},
		{"tag:incc", []string{cc}},
		{"tag:t1 subject:t1", []string{t1}},
		{"tag:t1 subject:bcc", nil},
	} {
		var l listJSON
		c.mustJSON("GET", "/api/v1/mailboxes/user/messages?q="+url.QueryEscape(tc.q), nil, 200, &l)
		var got []string
		for _, m := range l.Messages {
			got = append(got, m.ID)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("q=%s: got %v, want %v", tc.q, got, tc.want)
		}
	}
}
