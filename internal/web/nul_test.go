package web

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A message with NUL octets in its header fields, body and parts comes
// back from every JSON answer of the API without "\u0000" in any string,
// the text around each NUL kept.
func TestJSONHasNoNUL(t *testing.T) {
	e := newEnv(t, Options{})
	raw := "From: Ev\x00il <ev\x00il@example.org>\r\nTo: user@example.com\r\nSubject: Hel\x00lo\r\n" +
		"X-Note: a\x00b\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nbo\x00dy\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>ht\x00ml</p>\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f\x00.bin\"\r\n\r\n\x00\x00\r\n" +
		"--b--\r\n"
	id := e.deliver("user", raw)
	c := e.client()
	for _, path := range []string{
		"/api/v1/mailboxes",
		"/api/v1/mailboxes/user/messages",
		"/api/v1/mailboxes/user/messages?q=Hello",
		"/api/v1/mailboxes/user/messages/" + id,
	} {
		resp, b := c.do("GET", path, nil, false)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if bytes.Contains(b, []byte(`\u0000`)) || bytes.IndexByte(b, 0) >= 0 {
			t.Errorf("GET %s: NUL in the JSON: %s", path, b)
		}
	}
	var m messageJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id, nil, 200, &m)
	if m.Subject != "Hello" || !strings.Contains(m.From, "Evil") || !strings.Contains(m.Text, "body") || !strings.Contains(m.HTML, "html") {
		t.Fatalf("text around the NULs lost: %+v", m)
	}
}

// stripJSONNUL removes the escape of NUL only: an escaped backslash
// followed by "u0000" is text and stays.
func TestStripJSONNUL(t *testing.T) {
	for _, v := range []string{"a\x00b", `a\u0000b`, "\x00", `\`, "\\\x00", "x\"\x00\n\\"} {
		data, _ := json.Marshal(v)
		var got string
		if err := json.Unmarshal(stripJSONNUL(data), &got); err != nil {
			t.Fatalf("%q: %v in %s", v, err, stripJSONNUL(data))
		}
		if want := strings.ReplaceAll(v, "\x00", ""); got != want {
			t.Errorf("%q: got %q, want %q", v, got, want)
		}
	}
}
