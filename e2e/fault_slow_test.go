package e2e

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// A client trickling one byte per second. --smtp-command-timeout bounds the
// whole command line, not each read (as Postfix's smtpd_per_record_deadline
// does), so a trickled command cannot hold the session: the trickler is
// dropped with 421 4.4.2 within the timeout, its half-sent NOOP never
// answered, while others are served meanwhile.
func TestFaultTricklingClient(t *testing.T) {
	p := startFault(t, "", "--smtp-command-timeout", "2s")
	c := testsupport.Dial(t, p.Addr("smtp"))
	c.ExpectReply("220 *")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, b := range []byte("NOOP\r\n") {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	began := time.Now()
	// Someone else is served while the trickle goes on.
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: meanwhile\r\n\r\nok\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	rest, err := io.ReadAll(c.R)
	if err != nil && !testsupport.IsReset(err) {
		t.Fatalf("trickling client not dropped: %v after %q", err, rest)
	}
	if !testsupport.Glob("421 4.4.2 *\r\n", string(rest)) {
		t.Fatalf("trickling client got %q, want only 421 4.4.2 (the NOOP took longer than the command timeout)", rest)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Logf("dropped after %v (timeout 2s)", took)
	}
}

// A client that pipelines NOOPs without end and never reads a reply fills
// the socket buffers; the server's write then times out (--write-timeout)
// and it drops the client instead of blocking forever. Others are served.
func TestFaultClientNeverReads(t *testing.T) {
	// No junk-command limit: it would close the connection first.
	p := startFault(t, "", "--write-timeout", "2s", "--max-junk-commands", "0")
	conn, err := net.Dial("tcp", p.Addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	chunk := []byte(strings.Repeat("NOOP\r\n", 10000))
	start := time.Now()
	var werr error
	for written := 0; written < 1<<30; written += len(chunk) {
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, werr = conn.Write(chunk); werr != nil {
			break
		}
	}
	if werr == nil || !testsupport.IsReset(werr) {
		t.Fatalf("writing without reading: %v, want the server to drop the connection", werr)
	}
	t.Logf("server dropped the non-reading client after %v", time.Since(start).Round(100*time.Millisecond))
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: still here\r\n\r\nok\r\n")
}

// 1,000 idle connections: the server keeps serving others, answers 421
// beyond --max-connections, frees the slots when the idle clients go, and
// its memory stays bounded.
func TestFaultThousandIdleConnections(t *testing.T) {
	const idle = 1000
	p := startFault(t, "", "--max-connections", "1005")
	pid := p.cmd.Process.Pid
	rssBefore := procStatusKB(pid, "VmRSS")
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	for range idle {
		c, err := net.Dial("tcp", p.Addr("smtp"))
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "220 ") {
			t.Fatalf("idle connection %d: %q, %v", len(conns), buf[:n], err)
		}
	}
	rssIdle := procStatusKB(pid, "VmRSS")

	// Others are still served: SMTP (4 slots left) and POP3.
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: busy\r\n\r\nok\r\n")
	pc := login(t, p.Addr("pop3"), "user", "pass")
	pc.Send("STAT\r\n")
	pc.Expect("+OK 1 *")

	// Over the cap: 421.
	var extra []*testsupport.Conn
	for range 10 {
		extra = append(extra, testsupport.Dial(t, p.Addr("smtp")))
	}
	refused := 0
	for _, c := range extra {
		if l := c.Line(); strings.HasPrefix(l, "421 ") {
			refused++
		} else if !strings.HasPrefix(l, "220 ") {
			t.Fatalf("over the cap: %q", l)
		}
	}
	// 1000 idle + 10 more against a cap of 1005: 5 are over it (4 if the
	// slot of the delivery above is not yet released).
	if refused < 4 || refused > 5 {
		t.Fatalf("%d of 10 connections beyond 1000 refused with --max-connections 1005, want 5", refused)
	}
	for _, c := range extra {
		c.Close()
	}

	// The idle clients go; the slots come back.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if !testsupport.WaitUntil(20*time.Second, func() bool {
		c, err := net.Dial("tcp", p.Addr("smtp"))
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "220 ")
	}) {
		t.Fatal("slots not freed after the idle clients left")
	}
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Subject: after\r\n\r\nok\r\n")
	t.Logf("server VmRSS: %d kB at start, %d kB with %d idle SMTP connections (%.1f kB each), VmHWM %d kB",
		rssBefore, rssIdle, idle, float64(rssIdle-rssBefore)/idle, procStatusKB(pid, "VmHWM"))
	// A generous bound, not a benchmark: the race detector's shadow memory
	// multiplies the per-goroutine cost about tenfold.
	limit := 200 << 10
	if raceEnabled {
		limit = 600 << 10
	}
	if rssIdle > limit {
		t.Fatalf("VmRSS %d kB with %d idle connections, want < %d MB", rssIdle, idle, limit>>10)
	}
}
