package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/backend"
	"postoffice/internal/config"
	"postoffice/internal/smtp"
	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport"
)

// faultServer starts a whole server in-process on loopback port 0, without
// the HTTP listener, on a fresh mailbox directory.
func faultServer(t *testing.T) *Server {
	t.Helper()
	return opsServer(t, func(c *config.Config) { c.HTTPAddr = "" })
}

// faultDial connects to l.
func faultDial(t *testing.T, l net.Listener) *testsupport.Conn {
	t.Helper()
	return testsupport.Dial(t, l.Addr().String())
}

// stagedData counts the files holding data in the Maildir's staging
// directory root/.tmp that have no other name: deliveries in progress or
// cut off (its pool of prepared tmp files is empty; a delivered file whose
// staging name is not yet removed is linked in new/ too).
func stagedData(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(root, ".tmp"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() > 0 && fi.Sys().(*syscall.Stat_t).Nlink == 1 {
			n++
		}
		return nil
	})
	return n
}

// messageFiles counts the files of user's new/ and cur/ (stored) and those
// of user's tmp/ plus the staging directory's files holding data (tmp).
func messageFiles(t *testing.T, s *Server, user string) (stored, tmp int) {
	t.Helper()
	tmp = stagedData(t, s.cfg.MailboxDir)
	for _, sub := range []string{"new", "cur", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(s.cfg.MailboxDir, user, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if sub == "tmp" {
			tmp += len(ents)
		} else {
			stored += len(ents)
		}
	}
	return
}

// waitGoroutines waits until the goroutine count is at most want.
func waitGoroutines(want int) (n int, ok bool) {
	ok = testsupport.WaitUntil(15*time.Second, func() bool { n = runtime.NumGoroutine(); return n <= want })
	return n, ok
}

// Clients that vanish in the middle of DATA, of a BDAT chunk, between BDAT
// chunks and in the middle of a POP3 RETR leave no message (not even in
// tmp/), no maildrop lock (the next login succeeds at once) and no
// goroutine behind.
func TestFaultClientVanishes(t *testing.T) {
	s := faultServer(t)
	smtpL, pop3L := s.Listener("smtp"), s.Listener("pop3")

	// One big message to RETR, delivered through the server so that every
	// lazily started goroutine (directory syncers, ...) exists before the
	// baseline is taken.
	c := faultDial(t, smtpL)
	c.ExpectReply("220 *")
	c.Send("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("250 *")
	c.ExpectReply("354 *")
	line := strings.Repeat("r", 998) + "\r\n"
	c.Send("Subject: big\r\n\r\n" + strings.Repeat(line, 2000) + ".\r\n")
	c.ExpectReply("250 2.0.0 *")
	c.Send("QUIT\r\n")
	c.ExpectReply("221 *")
	c.Close()
	p := faultDial(t, pop3L)
	p.ExpectReply("+OK*")
	p.Send("USER user\r\nPASS pass\r\nQUIT\r\n")
	p.ExpectReply("+OK*")
	p.ExpectReply("+OK*")
	p.ExpectReply("+OK*")
	p.Close()
	time.Sleep(200 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	half := strings.Repeat(line, 100)
	vanish := map[string]func(){
		"mid-DATA": func() {
			c := faultDial(t, smtpL)
			c.ExpectReply("220 *")
			c.Send("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
			for _, w := range []string{"250 ", "250 ", "250 ", "354 "} {
				c.ExpectReply(w + "*")
			}
			c.Send("Subject: cut\r\n\r\n" + half)
			c.Close()
		},
		"mid-BDAT-chunk": func() {
			c := faultDial(t, smtpL)
			c.ExpectReply("220 *")
			c.Send("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\n")
			for _, w := range []string{"250 ", "250 ", "250 "} {
				c.ExpectReply(w + "*")
			}
			c.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", 2*len(half), half))
			time.Sleep(20 * time.Millisecond) // let the server read into the chunk
			c.Close()
		},
		"between-BDAT-chunks": func() {
			c := faultDial(t, smtpL)
			c.ExpectReply("220 *")
			c.Send(fmt.Sprintf("EHLO x\r\nMAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nBDAT %d\r\n%s", len(half), half))
			for _, w := range []string{"250 ", "250 ", "250 ", "250 "} {
				c.ExpectReply(w + "*")
			}
			c.Close()
		},
		"mid-RETR": func() {
			// The previous round's last login closed without QUIT: its
			// session may hold the lock for a moment yet.
			var p *testsupport.Conn
			deadline := time.Now().Add(10 * time.Second)
			for {
				p = faultDial(t, pop3L)
				p.ExpectReply("+OK*")
				p.Send("USER user\r\nPASS pass\r\n")
				p.ExpectReply("+OK*")
				l, _ := p.ReadLine()
				if strings.HasPrefix(l, "+OK maildrop") {
					break
				}
				p.Close()
				if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
					t.Fatalf("login before RETR: %q", l)
				}
				time.Sleep(20 * time.Millisecond)
			}
			p.Send("RETR 1\r\n")
			p.ExpectReply("+OK*")
			buf := make([]byte, 10000)
			io.ReadFull(p, buf)
			p.Close()
			// The lock is released: the next login gets in.
			deadline = time.Now().Add(10 * time.Second)
			for {
				q := faultDial(t, pop3L)
				q.ExpectReply("+OK*")
				q.Send("USER user\r\nPASS pass\r\n")
				q.ExpectReply("+OK*")
				l, _ := q.ReadLine()
				q.Close()
				if strings.HasPrefix(l, "+OK maildrop") {
					break
				}
				if !strings.HasPrefix(l, "-ERR [IN-USE]") || time.Now().After(deadline) {
					t.Fatalf("login after a client vanished mid-RETR: %q", l)
				}
				time.Sleep(20 * time.Millisecond)
			}
		},
	}
	for round := range 5 {
		for name, f := range vanish {
			t.Run(fmt.Sprintf("%s/%d", name, round), func(t *testing.T) { f() })
		}
	}

	// Nothing was stored, nothing is left in tmp/.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stored, tmp := messageFiles(t, s, "user")
		if stored != 1 {
			t.Fatalf("%d messages stored, want only the first one", stored)
		}
		if tmp == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files left in tmp/", tmp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// No goroutine leaked: back to the baseline, with a little slack for
	// the runtime's and the test framework's own.
	n, ok := waitGoroutines(baseline + 3)
	t.Logf("goroutines: baseline %d, after 20 vanished clients %d", baseline, n)
	if !ok {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines leaked: %d, baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// enospcStore is a Maildir whose message writes fail with ENOSPC while
// full is set: the message source fails after a few octets with the error
// a full disk gives, so the Maildir goes through its real failure path (the
// same io.Copy that writes the tmp file) and maps it to ErrNoSpace.
type enospcStore struct {
	*maildir.Maildir
	full atomic.Bool
}

func (e *enospcStore) Deliver(ctx context.Context, id string, boxes []string, r io.Reader) error {
	if e.full.Load() {
		r = io.MultiReader(io.LimitReader(r, 100), errReader{&os.PathError{Op: "write", Path: "tmp/" + id, Err: syscall.ENOSPC}})
	}
	return e.Maildir.Deliver(ctx, id, boxes, r)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// The disk-full path without a small filesystem (e2e
// TestFaultDiskFullTmpfs is the real one, where a tmpfs can be mounted):
// the store's writes fail with ENOSPC. The client gets 452 4.3.1 (RFC 3463
// §3.4: mail system full), nothing is left in new/ or tmp/, the session
// goes on, the stored mail stays readable, and delivery works again when
// space returns.
func TestFaultDiskFullInjected(t *testing.T) {
	md, err := maildir.New(filepath.Join(t.TempDir(), "mailbox"), maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	st := &enospcStore{Maildir: md}
	srv := &smtp.Server{
		Hostname: "mx.test",
		Backend:  &backend.SMTP{Store: st, Router: &backend.Router{Single: "user"}, Hostname: "mx.test"},
		Logger:   slog.New(slog.DiscardHandler),
	}
	l := testsupport.Listen(t)
	testsupport.ServeOn(t, srv, l, smtp.ErrServerClosed)

	c := faultDial(t, l)
	c.ExpectReply("220 *")
	c.Send("EHLO x\r\n")
	c.ExpectReply("250 *")
	deliver := func(want string) {
		t.Helper()
		c.Send("MAIL FROM:<a@test>\r\nRCPT TO:<user@test>\r\nDATA\r\n")
		c.ExpectReply("250 *")
		c.ExpectReply("250 *")
		c.ExpectReply("354 *")
		c.Send("Subject: x\r\n\r\n" + strings.Repeat("body\r\n", 1000) + ".\r\n")
		c.ExpectReply(want + "*")
	}
	deliver("250 2.0.0 ")
	st.full.Store(true)
	deliver("452 4.3.1 ")
	deliver("452 4.3.1 ")
	files := func(sub string) int {
		ents, err := os.ReadDir(filepath.Join(md.Root(), "user", sub))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	if n, tmp := files("new"), files("tmp")+stagedData(t, md.Root()); n != 1 || tmp != 0 {
		t.Fatalf("after 452: %d files in new/, %d in tmp/ or holding data in .tmp/; want 1 and 0", n, tmp)
	}
	// Reads go on while the disk is full.
	m, err := md.OpenMaildrop("user")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := m.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	m.Close()
	if err != nil || !strings.HasSuffix(string(b), strings.Repeat("body\r\n", 1000)) {
		t.Fatalf("reading while full: %d octets, %v", len(b), err)
	}
	st.full.Store(false)
	deliver("250 2.0.0 ")
	if n := files("new"); n != 2 {
		t.Fatalf("%d files in new/ after space returned, want 2", n)
	}
}
