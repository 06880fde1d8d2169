package backend

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"postoffice/internal/smtp"
	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport"
)

// traceFields returns the Return-Path and Received fields at the start of
// a stored message: the lines up to the first that is neither one of them
// nor a continuation.
func traceFields(msg []byte) []string {
	var out []string
	for _, l := range strings.SplitAfter(string(msg), "\r\n") {
		if strings.HasPrefix(l, "Return-Path:") || strings.HasPrefix(l, "Received:") || strings.HasPrefix(l, "\t") {
			out = append(out, l)
			continue
		}
		break
	}
	return out
}

// printableField reports whether a header line is printable ASCII and
// HTAB (as a fold's first octet) ended by CRLF.
func printableField(l string) bool {
	body, ok := strings.CutSuffix(l, "\r\n")
	if !ok {
		return false
	}
	body = strings.TrimPrefix(body, "\t")
	for i := 0; i < len(body); i++ {
		if body[i] < 0x20 || body[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestHostileHeloNotInStoredHeader drives the engine and this backend over
// a socket into a Maildir on disk: a HELO name with NUL is refused, one
// with HTAB and 8-bit octets is accepted, and the stored Received field
// carries only printable ASCII (RFC 5321 §4.1.1.1, §4.4).
func TestHostileHeloNotInStoredHeader(t *testing.T) {
	root, c := serveToMaildir(t)
	c.ExpectReply("220 *")
	c.Cmd("HELO \x00evil\x00", "501 5.5.2 *")
	c.Cmd("EHLO \x1b[1mx", "501 5.5.2 *")
	c.Cmd("EHLO h\xc3\xa9llo\tx\xff", "250 *")
	c.Cmd("MAIL FROM:<a@example.com>", "250 *")
	c.Cmd("RCPT TO:<user@example.com>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("Subject: t\r\n\r\nhi\r\n.", "250 2.0.0 Ok: queued as *")
	c.Cmd("QUIT", "221 *")

	msg := storedMessage(t, root)
	fields := traceFields(msg)
	if len(fields) < 2 || fields[1] != "Received: from h??llo?x? ([127.0.0.1])\r\n" {
		t.Fatalf("trace fields %q", fields)
	}
	for _, l := range fields {
		if !printableField(l) {
			t.Fatalf("stored header line %q holds octets outside printable ASCII", l)
		}
	}
}

// captureStore is a Deliverer that keeps the last message in memory.
type captureStore struct {
	mu   sync.Mutex
	last []byte
}

func (s *captureStore) NewID() string { return "ID1" }
func (s *captureStore) Deliver(ctx context.Context, id string, boxes []string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.last = b
	s.mu.Unlock()
	return nil
}

// FuzzHeloInStoredHeader sends an arbitrary HELO/EHLO name over a socket,
// then a message: whenever the message is stored, its HELO-derived
// Received line is printable ASCII (the engine refuses controls and turns
// other octets into '?'; the backend keeps the field's shape).
func FuzzHeloInStoredHeader(f *testing.F) {
	for _, s := range []string{"client.example.com", "\x00evil\x00", "\x00", "h\xc3\xa9llo", "a\tb", "\xff\xfe",
		"x (y) <z>; w", "[192.0.2.1]", "a\rb", "\x7f", strings.Repeat("\x80", 300)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	cs := &captureStore{}
	srv := &smtp.Server{
		Hostname: "mx.test",
		Backend:  &SMTP{Store: cs, Router: &Router{Single: "user"}, Hostname: "mx.test"},
		Logger:   slog.New(slog.DiscardHandler),
	}
	addr := testsupport.Serve(f, srv, smtp.ErrServerClosed)
	f.Fuzz(func(t *testing.T, helo string, ehlo bool) {
		if strings.Contains(helo, "\n") {
			return // a second command line, not a HELO name
		}
		verb := "HELO "
		if ehlo {
			verb = "EHLO "
		}
		cs.mu.Lock()
		cs.last = nil
		cs.mu.Unlock()
		in := verb + helo + "\r\nMAIL FROM:<a@b>\r\nRCPT TO:<user@x>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
		out, err := testsupport.Exchange(t, addr, []byte(in))
		if err != nil && !testsupport.IsReset(err) {
			t.Fatalf("reading replies: %v", err)
		}
		cs.mu.Lock()
		msg := cs.last
		cs.mu.Unlock()
		if msg == nil {
			if bytes.Contains(out, []byte("queued as")) {
				t.Fatal("queued but not stored")
			}
			return
		}
		for _, l := range traceFields(msg) {
			if !printableField(l) {
				t.Fatalf("HELO %q: stored header line %q holds octets outside printable ASCII", helo, l)
			}
		}
	})
}

// TestNoHeloStoredHeader: MAIL without HELO is accepted by default; the
// stored Received field names the client "unknown", as Postfix names a
// client it has no name for.
func TestNoHeloStoredHeader(t *testing.T) {
	root, c := serveToMaildir(t)
	c.ExpectReply("220 *")
	c.Cmd("MAIL FROM:<a@example.com>", "250 *")
	c.Cmd("RCPT TO:<user@example.com>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Cmd("Subject: t\r\n\r\nhi\r\n.", "250 2.0.0 Ok: queued as *")
	msg := storedMessage(t, root)
	fields := traceFields(msg)
	if len(fields) < 3 || fields[1] != "Received: from unknown ([127.0.0.1])\r\n" || !strings.HasPrefix(fields[2], "\tby mx.test (Postoffice) with SMTP id ") {
		t.Fatalf("trace fields %q", fields)
	}
}

// serveToMaildir serves the SMTP engine on this backend over a fresh
// Maildir, every recipient to mailbox "user", and returns the Maildir's
// root and a client connected to it.
func serveToMaildir(t *testing.T) (string, *testsupport.Conn) {
	t.Helper()
	root := t.TempDir()
	st, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := &smtp.Server{
		Hostname: "mx.test",
		Backend:  &SMTP{Store: st, Router: &Router{Single: "user"}, Hostname: "mx.test"},
		Logger:   slog.New(slog.DiscardHandler),
	}
	return root, testsupport.Dial(t, testsupport.Serve(t, srv, smtp.ErrServerClosed))
}

// storedMessage returns the one message stored in mailbox "user" under
// root.
func storedMessage(t *testing.T, root string) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "user", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("stored files %q", files)
	}
	msg, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
