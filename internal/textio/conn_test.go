package textio

import (
	"errors"
	"io"
	"net"
	"postoffice/internal/testsupport"
	"strings"
	"testing"
	"time"
)

// pair returns a Conn reading what the returned writer end sends, over a
// real loopback TCP connection.
func pair(t *testing.T, readTimeout time.Duration) (*Conn, net.Conn) {
	t.Helper()
	server, client := tcpPair(t)
	return NewConn(server, readTimeout, time.Second), client
}

// guardedPair is pair with a GuardConn between the Conn and the socket.
func guardedPair(t *testing.T, readTimeout time.Duration) (*Conn, *GuardConn, net.Conn) {
	t.Helper()
	server, client := tcpPair(t)
	g := NewGuardConn(server)
	return NewConn(g, readTimeout, time.Second), g, client
}

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l := testsupport.Listen(t)
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

func TestReadLine(t *testing.T) {
	c, w := pair(t, 5*time.Second)
	long := strings.Repeat("x", 100<<10)
	go func() {
		io.WriteString(w, "HELO a\r\nbare lf\n"+strings.Repeat("y", 600)+"\r\nafter\r\n"+long+"\r\nlast\r\npartial")
		w.Close()
	}()
	for _, want := range []struct {
		line string
		err  error
	}{
		{"HELO a", nil},
		{"bare lf", nil},
		{"", ErrLineTooLong},
		{"after", nil},
		{"", ErrLineTooLong},
		{"last", nil},
		{"", io.ErrUnexpectedEOF},
	} {
		got, err := c.ReadLine(512)
		if !errors.Is(err, want.err) || string(got) != want.line {
			t.Fatalf("ReadLine = %q, %v; want %q, %v", got, err, want.line, want.err)
		}
	}
}

func TestReadLineLongerThanBufferWithinLimit(t *testing.T) {
	c, w := pair(t, 5*time.Second)
	line := strings.Repeat("z", bufSize*2+17)
	go io.WriteString(w, line+"\r\nnext\r\n")
	got, err := c.ReadLine(len(line))
	if err != nil || string(got) != line {
		t.Fatalf("ReadLine: len %d err %v", len(got), err)
	}
	if got, err := c.ReadLine(10); err != nil || string(got) != "next" {
		t.Fatalf("next line = %q, %v", got, err)
	}
}

func TestReadTimeout(t *testing.T) {
	c, _ := pair(t, 50*time.Millisecond)
	_, err := c.ReadLine(512)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestPendingAndFlushIfIdle(t *testing.T) {
	c, w := pair(t, 5*time.Second)
	io.WriteString(w, "ONE\r\nTWO\r\n")
	if _, err := c.ReadLine(512); err != nil {
		t.Fatal(err)
	}
	if !c.Pending() {
		t.Fatal("second pipelined command not seen as pending")
	}
	c.W.WriteString("+OK one\r\n")
	c.FlushIfIdle()
	if c.W.Buffered() == 0 {
		t.Fatal("flushed although a command was pending")
	}
	c.ReadLine(512)
	c.W.WriteString("+OK two\r\n")
	if err := c.FlushIfIdle(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	w.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _ := io.ReadAtLeast(w, buf, len("+OK one\r\n+OK two\r\n"))
	if got := string(buf[:n]); got != "+OK one\r\n+OK two\r\n" {
		t.Fatalf("client got %q", got)
	}
}

// A partial line buffered must not hold replies back: the client may be
// waiting for them before it finishes the line.
func TestPendingIgnoresPartialLine(t *testing.T) {
	c, w := pair(t, 5*time.Second)
	io.WriteString(w, "ONE\r\nTW")
	if _, err := c.ReadLine(512); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for c.R.Buffered() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if c.R.Buffered() == 0 {
		t.Skip("partial line did not arrive in the same read")
	}
	if c.Pending() {
		t.Fatal("a partial line counted as a pending command")
	}
}

// A read limit on the GuardConn under a Conn bounds the whole line:
// octets trickled within the per-read timeout do not extend it.
func TestGuardReadLimitBoundsTrickledLine(t *testing.T) {
	c, g, w := guardedPair(t, 2*time.Second)
	g.SetReadLimit(time.Now().Add(300 * time.Millisecond))
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		for _, b := range []byte("NOOP\r\n") {
			w.Write([]byte{b})
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_, err := c.ReadLine(512)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout before the trickled line completes", err)
	}

	// Without the limit the same trickle is read whole.
	g.SetReadLimit(time.Time{})
	<-trickled
	c.ReadLine(512) // the rest of the first, cut-off line
	go func() {
		for _, b := range []byte("NOOP\r\n") {
			w.Write([]byte{b})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if line, err := c.ReadLine(512); err != nil || string(line) != "NOOP" {
		t.Fatalf("without a limit: %q, %v", line, err)
	}
}

// Interrupt wakes a read that is already blocked.
func TestGuardInterruptWakesBlockedRead(t *testing.T) {
	c, g, _ := guardedPair(t, time.Minute)
	done := make(chan error, 1)
	go func() { _, err := c.ReadLine(512); done <- err }()
	time.Sleep(50 * time.Millisecond)
	g.Interrupt()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !g.Interrupted() {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not wake the read")
	}
}
