package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"postoffice/internal/testsupport"
)

// The session, verbatim over a raw socket.
func TestSeedSessionVerbatim(t *testing.T) {
	p := start(t, "")
	id := seedSession(t, p)

	files := mailFiles(t, p.dir, "user")
	if len(files) != 1 || filepath.Base(files[0]) != id+".eml" || filepath.Base(filepath.Dir(files[0])) != "new" {
		t.Fatalf("files = %v, want one new/%s.eml (two recipients, one mailbox, one copy)", files, id)
	}
	eml, _ := os.ReadFile(files[0])
	trace, msg := stripTrace(t, eml)
	if msg != "Subject: Test Email\r\nHello Bob,\r\n.a line that starts with a dot\r\n" {
		t.Fatalf("stored message %q", msg)
	}
	if !strings.HasPrefix(trace, "Return-Path: <alice@example.com>\r\nReceived: from client.example.com ([127.0.0.1])\r\n\tby mx.test (Postoffice) with SMTP id "+id) {
		t.Fatalf("trace headers %q", trace)
	}
	if strings.Contains(trace, "for <") {
		t.Fatalf("'for' clause with two recipients: %q", trace)
	}
	// Both recipients have the one mailbox: each is named in an
	// X-Original-To after the Received field (for the API's tag: search).
	trace, ok := strings.CutSuffix(trace, "X-Original-To: bob@example.com\r\nX-Original-To: carol@example.com\r\n")
	if !ok {
		t.Fatalf("no X-Original-To per recipient after Received: %q", trace)
	}
	if !regexp.MustCompile(`; [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n$`).MatchString(trace) {
		t.Fatalf("Received date not RFC 5322: %q", trace)
	}
	// The log line may be written just after the 250 reached the client.
	testsupport.WaitFor(t, "the queue id in the log", func() bool { return strings.Contains(p.Log(), id) })
}

// net/smtp as an independent client: several recipients, a dot-stuffed
// body, 8-bit data and a 10 MB body, checked byte for byte.
func TestNetSMTPByteForByte(t *testing.T) {
	p := start(t, "")
	big := make([]byte, 7_500_000)
	rand.Read(big)
	b64 := base64.StdEncoding.EncodeToString(big) // 10 MB of base64
	var bigBody strings.Builder
	bigBody.WriteString("Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(b64); i += 76 {
		bigBody.WriteString(b64[i:min(i+76, len(b64))] + "\r\n")
	}
	for _, tc := range []struct {
		name string
		to   []string
		body string
	}{
		{"dots", []string{"a@x.test", "b@y.test", "c@z.test"}, "Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nend.\r\n"},
		{"8bit", []string{"u@x.test"}, "Subject: =?utf-8?q?8bit?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße, 日本語, \xff\xfe raw\r\n"},
		{"10MB", []string{"big@x.test"}, bigBody.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(mailFiles(t, p.dir, "user"))
			if err := smtp.SendMail(p.Addr("smtp"), nil, "sender@client.test", tc.to, []byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			files := mailFiles(t, p.dir, "user")
			if len(files) != before+1 {
				t.Fatalf("%d files, want %d", len(files), before+1)
			}
			var found bool
			for _, f := range files {
				eml, _ := os.ReadFile(f)
				if !bytes.HasPrefix(eml, []byte("Return-Path: <sender@client.test>")) {
					t.Fatalf("%s: %.60q", f, eml)
				}
				trace, msg := stripTrace(t, eml)
				if msg == tc.body {
					found = true
					if !strings.Contains(trace, "with UTF8SMTP id ") { // net/smtp uses SMTPUTF8 when offered (RFC 6531 §3.7.3)
						t.Errorf("trace %q", trace)
					}
					if one := len(tc.to) == 1; one != strings.Contains(trace, "for <"+tc.to[0]+">") {
						t.Errorf("for clause with %d recipients: %q", len(tc.to), trace)
					}
				}
			}
			if !found {
				t.Fatal("no stored file equals the sent message byte for byte")
			}
		})
	}
}

func TestSIGTERMExitsZero(t *testing.T) {
	p := start(t, "")
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.Log())
	}
	c.ExpectReply("421 4.3.2 *")
}
