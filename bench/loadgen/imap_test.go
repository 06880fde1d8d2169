package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// A response is read whole: literals (plain, LITERAL+ and literal8) are
// skipped by their announced size even when their data looks like the
// end of a line or another announcement, lines longer than the reader's
// buffer are kept, and bare LF ends a line too.
func TestReadIMAPResponse(t *testing.T) {
	long := strings.Repeat("x", 40000)
	stream := "* 1 FETCH (UID 7 BODY[] {12}\r\nab\r\n{3}\r\n)\r\n)\r\n" +
		"* 2 FETCH (BODY[1] {0}\r\n BODY[2] ~{5}\r\n}\r\n\r\n)\r\n" +
		"* OK [ALERT] not a literal {abc}\r\n" +
		"* 3 FETCH (X {2+}\r\nhi)\r\n" +
		"* OK " + long + "\r\n" +
		"a1 OK done\n"
	r := bufio.NewReaderSize(strings.NewReader(stream), 16)
	want := []struct {
		text string
		lits []int
	}{
		{"* 1 FETCH (UID 7 BODY[] {12})", []int{12}},
		{"* 2 FETCH (BODY[1] {0} BODY[2] ~{5})", []int{0, 5}},
		{"* OK [ALERT] not a literal {abc}", nil},
		{"* 3 FETCH (X {2+})", []int{2}},
		{"* OK " + long, nil},
		{"a1 OK done", nil},
	}
	var buf []byte
	for i, w := range want {
		resp, err := readIMAPResponse(r, buf)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if string(resp.text) != w.text || !equalInts(resp.lits, w.lits) {
			t.Fatalf("response %d: %.80q %v, want %.80q %v", i, resp.text, resp.lits, w.text, w.lits)
		}
		buf = resp.text
	}
	if _, err := readIMAPResponse(r, buf); err != io.EOF {
		t.Fatalf("after the last response: %v, want EOF", err)
	}
}

// A connection that ends inside a literal or inside a line is an error,
// not a short response.
func TestReadIMAPResponseTruncated(t *testing.T) {
	for _, s := range []string{"* 1 FETCH (BODY[] {10}\r\nabc", "* 1 FETCH (BODY[] {3}\r\nabc", "* 1 EXISTS"} {
		_, err := readIMAPResponse(bufio.NewReader(strings.NewReader(s)), nil)
		if err == nil || err == io.EOF {
			t.Errorf("%q: error %v, want an unexpected end", s, err)
		}
	}
}

func TestUntagged(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		kind string
		ok   bool
	}{
		{"* 12 EXISTS", 12, "EXISTS", true},
		{"* 3 fetch (UID 4)", 3, "FETCH", true},
		{"* 0 RECENT", 0, "RECENT", true},
		{"* OK [UIDNEXT 5] predicted", 0, "", false},
		{"* FLAGS (\\Seen)", 0, "", false},
		{"a1 12 EXISTS", 0, "", false},
		{"* 12", 0, "", false},
		{"* -1 EXISTS", 0, "", false},
	} {
		n, kind, ok := untagged([]byte(c.in))
		if n != c.n || kind != c.kind || ok != c.ok {
			t.Errorf("%q: %d %q %v, want %d %q %v", c.in, n, kind, ok, c.n, c.kind, c.ok)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// memIMAP serves go-imap's in-memory server on a loopback port, with user
// "u"/"p" and an INBOX of n messages of 2048 octets.
func memIMAP(t *testing.T, n int) (addr string, user *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user = imapmemserver.NewUser("u", "p")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	for i := range n {
		appendMsg(t, user, i)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), user
}

func appendMsg(t *testing.T, user *imapmemserver.User, i int) {
	raw, _ := makeMessage(rand.New(rand.NewPCG(1, uint64(i))), 2048, i)
	if _, err := user.Append("INBOX", literal{bytes.NewReader(raw)}, &imap.AppendOptions{}); err != nil {
		t.Error(err)
	}
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// fakeSMTP accepts SMTP transactions and, at the end of each DATA, appends
// the message to user's INBOX before answering 250, as a mail server whose
// delivery IMAP sees at once.
func fakeSMTP(t *testing.T, user *imapmemserver.User) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 fake\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
					case "DATA":
						c.Write([]byte("354 go on\r\n"))
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							if l == ".\r\n" {
								break
							}
						}
						appendMsg(t, user, 1000+i)
						c.Write([]byte("250 queued\r\n"))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("250 ok\r\n"))
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func imapOptions(mode, addr string) *options {
	return &options{mode: mode, addr: addr, user: "u", pass: "p", mailbox: "INBOX", conns: 1, msgs: 1,
		size: 2048, timeout: 10 * time.Second, from: "a@example.com", to: "u@example.com", seed: 1}
}

// The FETCH and BODY.PEEK[] modes count every message of the mailbox, and
// the body mode checks every literal's size.
func TestIMAPFetchAndBody(t *testing.T) {
	addr, _ := memIMAP(t, 30)
	ctx := context.Background()
	o := imapOptions("imapfetch", addr)
	o.msgs = 2
	r := runIMAPFetch(ctx, o)
	if r.Messages != 60 || r.Errors != 0 || r.P50ms <= 0 || r.FetchMs <= 0 {
		t.Fatalf("imapfetch: %+v, want 60 messages over 2 sessions", r)
	}
	o = imapOptions("imapbody", addr)
	r = runIMAPBody(ctx, o)
	if r.Messages != 30 || r.Errors != 0 || r.MBPerSec <= 0 {
		t.Fatalf("imapbody: %+v, want 30 messages", r)
	}
	o.size = 1000
	if r = runIMAPBody(ctx, o); r.Errors == 0 || !strings.Contains(r.FirstError, "2048 octets, want 1000") {
		t.Fatalf("imapbody with a wrong -size: %+v, want a size error", r)
	}
}

// A wrong password and an empty mailbox are errors, not zero-message
// successes.
func TestIMAPFetchRefusals(t *testing.T) {
	addr, _ := memIMAP(t, 0)
	ctx := context.Background()
	o := imapOptions("imapfetch", addr)
	if r := runIMAPFetch(ctx, o); r.Errors != 1 || !strings.Contains(r.FirstError, "SELECT: 0 messages") {
		t.Fatalf("empty mailbox: %+v", r)
	}
	o.pass = "wrong"
	if r := runIMAPFetch(ctx, o); r.Errors != 1 || !strings.Contains(r.FirstError, "LOGIN") {
		t.Fatalf("wrong password: %+v", r)
	}
}

// The IDLE modes see every delivery's EXISTS: one session over several
// deliveries, and many sessions over one delivery, which hold until the
// ready file is removed.
func TestIMAPIdle(t *testing.T) {
	addr, user := memIMAP(t, 3)
	smtpAddr := fakeSMTP(t, user)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := imapOptions("imapidle", addr)
	o.smtpAddr, o.msgs = smtpAddr, 5
	r := runIMAPIdle(ctx, o)
	if r.Messages != 5 || r.Errors != 0 {
		t.Fatalf("imapidle: %+v, want 5 deliveries seen", r)
	}

	o = imapOptions("imapidlemany", addr)
	o.smtpAddr, o.conns, o.ready = smtpAddr, 12, t.TempDir()+"/ready"
	done := make(chan Result)
	go func() { done <- runIMAPIdleMany(ctx, o) }()
	if err := waitFile(o.ready, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("imapidlemany returned while the ready file exists: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	removeFile(t, o.ready)
	r = <-done
	if r.Messages != 12 || r.Errors != 0 {
		t.Fatalf("imapidlemany: %+v, want 12 sessions that saw the EXISTS", r)
	}
}

// A delivery the IDLE session never sees is counted as an error.
func TestIMAPIdleMissingExists(t *testing.T) {
	addr, _ := memIMAP(t, 1)
	_, other := memIMAP(t, 0) // deliveries land in another server's INBOX
	ctx := context.Background()
	o := imapOptions("imapidle", addr)
	o.smtpAddr, o.msgs, o.timeout = fakeSMTP(t, other), 2, 300*time.Millisecond
	r := runIMAPIdle(ctx, o)
	if r.Messages != 0 || r.Errors != 2 || !strings.Contains(r.FirstError, "no EXISTS") {
		t.Fatalf("%+v, want 2 missing EXISTS", r)
	}
}

func waitFile(path string, limit time.Duration) error {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if fileExists(path) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New(path + " not created")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
