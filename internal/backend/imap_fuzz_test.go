package backend

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// imapSeeds are commands of every state, well-formed and not.
var imapSeeds = []string{
	"a CAPABILITY", "a NOOP", "a LOGOUT", "a STARTTLS", "a AUTHENTICATE PLAIN", "a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==",
	"a LOGIN user pass", "a LOGIN {4}\r\nuser {4}\r\npass", "a ENABLE UTF8=ACCEPT IMAP4rev2", "a NAMESPACE",
	`a LIST "" "*"`, `a LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN STATUS (MESSAGES SIZE))`,
	`a LSUB "" *`, "a CREATE x/y", "a CREATE &AOk-t&AOk-", "a DELETE x/y", "a RENAME x z", "a SUBSCRIBE z",
	"a UNSUBSCRIBE z", "a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT APPENDLIMIT)",
	"a SELECT INBOX", "a EXAMINE Archive", "a SELECT \"\"", "a APPEND INBOX (\\Seen $k) {5+}\r\nhello",
	"a APPEND INBOX {99999999999}", "a FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE INTERNALDATE)",
	"a FETCH * BODY[1.2.HEADER.FIELDS (SUBJECT)]<0.10>", "a FETCH 1 (BODY[] BINARY[1] BINARY.SIZE[1])",
	"a UID FETCH 4294967295:* FLAGS", "a FETCH 0 FLAGS", "a FETCH $ FLAGS", "a STORE 1:* +FLAGS (\\Deleted \\Recent kw)",
	"a UID STORE * FLAGS.SILENT ()", "a SEARCH RETURN (SAVE ALL) OR SUBJECT x NOT BODY y", "a SEARCH CHARSET UTF-8 TEXT é",
	"a UID SEARCH UID 1:* SINCE 1-Jan-2000 LARGER 1", "a COPY 1:* Trash", "a UID MOVE 1 Archive", "a MOVE $ Junk",
	"a EXPUNGE", "a UID EXPUNGE 1:3", "a CLOSE", "a UNSELECT", "a IDLE\r\nDONE", "a CHECK", "a UNAUTHENTICATE",
	"a ID NIL", "a\r\n", "* NOOP", "a FETCH 1 BODY[", "a LOGIN \"\\\"", "a LIST \"\" {3+}\r\n%%%",
}

// FuzzIMAPSession feeds arbitrary lines to a logged-in session of the real
// engine (the library's parser in front) and this backend over a Maildir:
// the engine never panics, and the server still serves a new session.
func FuzzIMAPSession(f *testing.F) {
	for _, s := range imapSeeds {
		f.Add(s)
	}
	var logs testsupport.LogBuffer
	fx := newIMAPFixtureLog(f, slog.New(slog.NewTextHandler(&logs, nil)))
	fx.deliver(f, "fuzz", "body")
	f.Fuzz(func(t *testing.T, in string) {
		nc, err := net.DialTimeout("tcp", fx.addr, testsupport.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		c := testsupport.NewConn(t, nc)
		c.IMAPLogin("user", "pass")
		c.IMAP("SELECT INBOX", "OK *")
		c.Send(in + "\r\n")
		// Read what comes for a moment; the connection may end.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, err := c.R.ReadString('\n'); err != nil {
				break
			}
		}
		c.Close()
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("the engine panicked on %q:\n%s", in, logs.String())
		}
		fresh := fx.login(t)
		fresh.IMAP("NOOP", "OK *")
		fresh.Close()
	})
}
