package testsupport

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// peer serves one connection on a loopback listener: it writes script and
// then closes, reading and discarding what the client sends.
func peer(t *testing.T, script string) string {
	t.Helper()
	l := Listen(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		go io.Copy(io.Discard, c)
		io.WriteString(c, script)
	}()
	return l.Addr().String()
}

// failure records the first Fatalf of a check run by failed.
type failure struct {
	testing.TB
	msg string
}

func (f *failure) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failed runs check on a Conn to addr whose failures are recorded, not
// reported, and returns the failure message ("" when check passed).
func failed(t *testing.T, addr string, check func(c *Conn)) string {
	f := &failure{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(Dial(f, addr))
	}()
	<-done
	return f.msg
}

func TestConnTranscript(t *testing.T) {
	addr := peer(t, "220 mx.test ready\r\n"+
		"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"+
		"550 5.1.1 no such user (conn 01H8X)\r\n"+
		"+OK 2 messages\r\n1 10\r\n..2 20\r\n.\r\n"+
		"+OK\r\nline\r\n.\r\n")
	c := Dial(t, addr)
	c.ConnID = true
	c.ExpectReply("220 *")
	r := c.Cmd("EHLO client", "250 SIZE *")
	if len(r) != 3 || r[1] != "250-PIPELINING" || r.Last() != "250 SIZE 1000" {
		t.Fatalf("EHLO reply %q", r)
	}
	c.ExpectReply("550 5.1.1 no such user")
	if got := c.ExpectMulti("+OK 2 *"); len(got) != 2 || got[0] != "1 10" || got[1] != ".2 20" {
		t.Fatalf("multi-line body %q", got)
	}
	c.Expect("+OK")
	if got := c.MultilineText(); got != "line\r\n" {
		t.Fatalf("multi-line text %q", got)
	}
	c.ExpectClosed()
}

func TestConnFailures(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		check        func(c *Conn)
		want         string // in the failure message
	}{
		{"line mismatch", "+OK one\r\n", func(c *Conn) { c.Expect("-ERR*") }, `got "+OK one", want "-ERR*"`},
		{"second pattern", "+OK\r\n-ERR x\r\n", func(c *Conn) { c.Expect("+OK", "+OK*") }, `got "-ERR x"`},
		{"reply mismatch", "250-a\r\n250 b\r\n", func(c *Conn) { c.ExpectReply("354 *") }, `["250-a" "250 b"]`},
		{"bare LF", "250 ok\n", func(c *Conn) { c.ExpectReply("250 *") }, "does not end in CRLF"},
		{"no connection id", "550 no\r\n", func(c *Conn) { c.ConnID = true; c.ExpectReply("550 *") }, "without the connection id"},
		{"more before close", "421 bye\r\n", func(c *Conn) { c.ExpectClosed() }, `got "421 bye\r\n"`},
		{"closed early", "", func(c *Conn) { c.Line() }, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := failed(t, peer(t, tc.script), tc.check)
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("failure %q, want one with %q", msg, tc.want)
			}
		})
	}
}
