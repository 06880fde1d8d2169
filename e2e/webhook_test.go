package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// TestWebhookBinary: the binary with --webhook-url and --webhook-secret
// posts one signed JSON notification per delivered message; a message
// delivered just before SIGTERM is still posted in the drain time.
func TestWebhookBinary(t *testing.T) {
	type call struct {
		body []byte
		sig  string
	}
	calls := make(chan call, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- call{b, r.Header.Get("X-Postoffice-Signature")}
	}))
	defer rcv.Close()
	p := start(t, "", "--http-addr=", "--webhook-url", rcv.URL, "--webhook-secret", "topsecret")
	id := sendRaw(t, p.Addr("smtp"), "a@x.test", []string{"user@example.org"}, "Subject: hook\r\n\r\nhi\r\n")
	id2 := sendRaw(t, p.Addr("smtp"), "b@x.test", []string{"user@example.org"}, "Subject: last\r\n\r\nbye\r\n")
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	seen := map[string]string{}
	for range 2 {
		var c call
		select {
		case c = <-calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("notifications: %v", seen)
		}
		m := hmac.New(sha256.New, []byte("topsecret"))
		m.Write(c.body)
		if c.sig != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			t.Fatalf("signature %q of %s", c.sig, c.body)
		}
		var n struct{ ID, Mailbox, Subject string }
		if err := json.Unmarshal(c.body, &n); err != nil || n.Mailbox != "user" {
			t.Fatalf("%s: %v", c.body, err)
		}
		seen[n.ID] = n.Subject
	}
	if seen[id] != "hook" || seen[id2] != "last" {
		t.Fatalf("notifications %v for %s, %s", seen, id, id2)
	}
}
