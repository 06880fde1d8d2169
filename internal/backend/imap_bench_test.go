package backend

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkIMAPFetchEnvelopes: one session's SELECT and FETCH 1:* (UID
// FLAGS RFC822.SIZE ENVELOPE) over 10,000 messages, warm (the UIDs are
// assigned before the timer starts).
func BenchmarkIMAPFetchEnvelopes(b *testing.B) {
	f := newIMAPFixture(b)
	for i := 0; i < 10000; i++ {
		f.deliver(b, fmt.Sprint("subject ", i), strings.Repeat("body line\r\n", 150))
	}
	c := f.login(b)
	c.IMAP("SELECT INBOX", "OK *")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.IMAP("SELECT INBOX", "OK *")
		r := c.IMAP("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", "OK *")
		if len(r.Untagged) != 10000 {
			b.Fatalf("%d responses", len(r.Untagged))
		}
	}
}

// BenchmarkIMAPNoop: the cost of a command's poll on a folder of 10,000
// messages where nothing changed.
func BenchmarkIMAPNoop(b *testing.B) {
	f := newIMAPFixture(b)
	for i := 0; i < 10000; i++ {
		f.deliver(b, fmt.Sprint("subject ", i), "x")
	}
	c := f.login(b)
	c.IMAP("SELECT INBOX", "OK *")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.IMAP("NOOP", "OK *")
	}
}

// BenchmarkIMAPFetchBodies: UID FETCH 1:* BODY.PEEK[] of 5,000 messages of
// 2 KB.
func BenchmarkIMAPFetchBodies(b *testing.B) {
	f := newIMAPFixture(b)
	for i := 0; i < 5000; i++ {
		f.deliver(b, fmt.Sprint("subject ", i), strings.Repeat("body line\r\n", 170))
	}
	c := f.login(b)
	c.IMAP("SELECT INBOX", "OK *")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := c.IMAP("UID FETCH 1:* BODY.PEEK[]", "OK *")
		if len(r.Untagged) != 5000 {
			b.Fatalf("%d responses", len(r.Untagged))
		}
	}
}
