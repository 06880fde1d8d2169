package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// dataSession dials addr and opens a transaction up to the 354.
func dataSession(t *testing.T, addr string) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.ExpectReply("220 *")
	c.Send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 2.1.0*")
	c.ExpectReply("250 2.1.5*")
	c.ExpectReply("354 *")
	return c
}

// --smtp-min-data-rate on the real binary: a client trickling an octet
// well within each --smtp-data-timeout gets 421 4.4.2, and no message file
// appears in the mailbox.
func TestMinDataRateTrickleNothingStored(t *testing.T) {
	p := start(t, "", "--smtp-data-timeout", "400ms", "--smtp-min-data-rate", "1000")
	c := dataSession(t, p.Addr("smtp"))
	for _, b := range []byte("Subject: slow\r\n\r\nbody\r\n.\r\n") {
		time.Sleep(150 * time.Millisecond)
		c.SetWriteDeadline(time.Now().Add(testsupport.Timeout))
		if _, err := c.Conn.Write([]byte{b}); err != nil {
			break
		}
	}
	c.ExpectReply("421 4.4.2 mx.test Timeout exceeded: data rate below 1000 octets/s*")
	c.ExpectClosed()
	if f := mailFiles(t, p.dir, "user"); len(f) != 0 {
		t.Fatalf("message files after the cut-off: %v", f)
	}
}

// --smtp-bare-newline on the real binary, as stored in the Maildir: the
// same data (a bare LF, a stuffed dot after it, a NUL) in each mode, and
// POP3 reports the file's size.
func TestBareNewlineModesOnDisk(t *testing.T) {
	const data = "Subject: t\r\n\r\na\n..b\r\nc\x00d\r\n.\r\n"
	for _, tc := range []struct{ mode, reply, stored string }{
		{"normalize", "250 2.0.0 Ok: queued as *", "Subject: t\r\n\r\na\r\n.b\r\nc\x00d\r\n"},
		{"accept", "250 2.0.0 Ok: queued as *", "Subject: t\r\n\r\na\r\n..b\r\nc\x00d\r\n"},
		{"reject", "550 5.5.2 Error: bare <LF> received*", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p := start(t, "", "--smtp-bare-newline", tc.mode)
			c := dataSession(t, p.Addr("smtp"))
			c.Send(data)
			c.ExpectReply(tc.reply)
			files := mailFiles(t, p.dir, "user")
			if tc.stored == "" {
				if len(files) != 0 {
					t.Fatalf("refused message stored: %v", files)
				}
				return
			}
			if len(files) != 1 {
				t.Fatalf("files %v", files)
			}
			eml, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, msg := stripTrace(t, eml); msg != tc.stored {
				t.Fatalf("stored %q, want %q", msg, tc.stored)
			}
			pc := login(t, p.Addr("pop3"), "user", "pass")
			pc.Send("STAT\r\n")
			pc.Expect("+OK 1 " + strconv.Itoa(len(eml)))
		})
	}
}
