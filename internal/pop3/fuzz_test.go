package pop3

import (
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// seedCommands is every command of every state, well- and ill-formed.
var seedCommands = []string{
	"USER user", "PASS pass", "PASS two words", "AUTH", "AUTH PLAIN",
	"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00pass")),
	"AUTH PLAIN =", "AUTH PLAIN *", "AUTH CRAM-MD5", "STLS", "CAPA", "QUIT",
	"STAT", "LIST", "LIST 1", "LIST 0", "RETR 1", "RETR 2", "RETR 99", "DELE 1",
	"DELE -1", "NOOP", "RSET", "TOP 1 0", "TOP 2 1", "TOP 1 99999999999", "UIDL",
	"UIDL 2", "APOP user abc", "", " ", "user user", "RETR abc", "TOP 1 x",
	"LIST 1 2", "X\x00Y", "RETR 1\r",
}

func FuzzCommand(f *testing.F) {
	for _, s := range seedCommands {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if n := len(cmd.Verb); n < 1 || n > maxVerbLen || strings.ToUpper(cmd.Verb) != cmd.Verb {
			t.Fatalf("bad verb %q", cmd.Verb)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.ContainsAny(a, " \x00\r\n") {
				t.Fatalf("bad argument %q", a)
			}
			if i, ok := parseMsgNum(a, 5); ok && (i < 0 || i >= 5) {
				t.Fatalf("parseMsgNum(%q) = %d", a, i)
			}
		}
		if len(cmd.Args) > 0 {
			decodePlain(cmd.Args[len(cmd.Args)-1])
		}
	})
}

// FuzzSession feeds arbitrary bytes as a whole client transcript to a
// server with a few messages. The session must end (no hang), never panic
// (a recovered panic shows as "internal error"), and always release the
// maildrop.
func FuzzSession(f *testing.F) {
	f.Add([]byte(strings.Join(seedCommands, "\r\n") + "\r\n"))
	for _, s := range seedCommands {
		f.Add([]byte("USER user\r\nPASS pass\r\n" + s + "\r\nQUIT\r\n"))
		f.Add([]byte(s + "\r\n"))
	}
	f.Add([]byte("AUTH PLAIN\r\n*\r\nUSER user\r\nPASS pass\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n"))
	f.Add([]byte("USER user\nPASS pass\nLIST\n" + strings.Repeat("x", 300) + "\nUIDL\n"))

	b := newFakeBackend()
	b.add("user", msg1, msg2, ".\r\n..\r\n", "no header separator\r\n")
	b.keepOnCommit = true
	srv := &Server{
		Backend:      b,
		LoginTimeout: 5 * time.Second,
		IdleTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
	addr := testsupport.Serve(f, srv, ErrServerClosed)

	f.Fuzz(func(t *testing.T, input []byte) {
		out, err := testsupport.Exchange(t, addr, input)
		if err != nil {
			t.Fatalf("session did not end: %v", err)
		}
		if strings.Contains(string(out), "internal error") {
			t.Fatalf("panic in session for input %q", input)
		}
		if !strings.HasPrefix(string(out), "+OK Postoffice POP3 ready\r\n") {
			t.Fatalf("no greeting: %q", out)
		}
		// The maildrop is released once the session is gone.
		testsupport.WaitFor(t, "the maildrop to be released after the session ended", func() bool { return !b.isLocked("user") })
	})
}
