package smtp

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// trickle writes s one octet at a time, every interval, and stops at the
// first write that fails (the server has closed the connection).
func trickle(c *testsupport.Conn, s string, interval time.Duration) {
	for i := 0; i < len(s); i++ {
		time.Sleep(interval)
		c.SetWriteDeadline(time.Now().Add(testsupport.Timeout))
		if _, err := c.Conn.Write([]byte{s[i]}); err != nil {
			return
		}
	}
}

// rateServer has a short block timeout and a minimum data rate at which an
// octet per block buys next to nothing (1 ms per octet).
func rateServer(t *testing.T, be *fakeBackend) *Server {
	srv := testServer(t, be)
	srv.DataTimeout = 400 * time.Millisecond
	srv.MinDataRate = 1000
	return srv
}

// A client that sends an octet well within each block timeout, but far
// below the minimum data rate, is cut off with 421 4.4.2 (as Postfix's
// smtpd_min_data_rate does) and nothing is stored. Before the minimum rate
// the message below, sent over 3 s, was accepted: each wait was only 150 ms.
func TestDataMinRateTrickleCutOff(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, rateServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	trickle(c, "Subject: slow\r\n\r\nbody\r\n.\r\n", 150*time.Millisecond)
	c.ExpectReply("421 4.4.2 mx.test Timeout exceeded: data rate below 1000 octets/s, closing connection")
	c.ExpectClosed()
	if m := be.messages(); len(m) != 0 {
		t.Fatalf("partial message stored: %q", m[0].data)
	}
	if errs := be.errs(); len(errs) != 1 {
		t.Fatalf("backend errors %v, want the read error", errs)
	}
}

// The same for a BDAT chunk.
func TestBDATMinRateTrickleCutOff(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, rateServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	body := "Subject: slow\r\n\r\nbody\r\n"
	c.Send("BDAT " + strconv.Itoa(len(body)) + " LAST\r\n")
	trickle(c, body, 150*time.Millisecond)
	c.ExpectReply("421 4.4.2 mx.test Timeout exceeded: data rate below 1000 octets/s, closing connection")
	c.ExpectClosed()
	if m := be.messages(); len(m) != 0 {
		t.Fatalf("partial message stored: %q", m[0].data)
	}
}

// A chunk that is discarded (no recipient yet) is held to the rate too.
func TestBDATDiscardedChunkMinRate(t *testing.T) {
	be := newBackend()
	c := dialGreeted(t, testsupport.Serve(t, rateServer(t, be), ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Send("BDAT 30\r\n")
	trickle(c, strings.Repeat("x", 30), 150*time.Millisecond)
	c.ExpectReply("421 4.4.2 * data rate below 1000 octets/s*")
	c.ExpectClosed()
}

// A client at the minimum rate or faster is never cut off, however long
// the message takes in all: the deadline grows with the data (here each
// octet buys 100 ms and one arrives every 20 ms, for longer in all than the
// block timeout).
func TestDataMinRateSteadyClientAccepted(t *testing.T) {
	be := newBackend()
	srv := testServer(t, be)
	srv.DataTimeout = time.Second
	srv.MinDataRate = 10
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	body := "Subject: steady\r\n\r\n" + strings.Repeat("y", 60) + "\r\n"
	trickle(c, body+".\r\n", 20*time.Millisecond)
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	if m := be.messages(); len(m) != 1 || m[0].data != body {
		t.Fatalf("messages %+v", m)
	}
}

// With no minimum (0), only the block timeout applies: the trickle that
// the minimum cuts off is accepted, as before.
func TestDataMinRateOff(t *testing.T) {
	be := newBackend()
	srv := rateServer(t, be)
	srv.MinDataRate = 0
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	trickle(c, "a\r\nb\r\n.\r\n", 100*time.Millisecond)
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
}

// Only the time spent waiting for the client counts: a backend that takes
// longer than the block timeout between two reads does not use up the
// client's time (Postfix charges the elapsed time of each read alone).
func TestDataMinRateBackendTimeNotCharged(t *testing.T) {
	be := newBackend()
	srv := rateServer(t, be)
	first := make(chan struct{})
	be.readHook = func(r io.Reader) (string, error) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		close(first)
		time.Sleep(3 * srv.DataTimeout) // a slow disk
		_, err := io.Copy(io.Discard, r)
		return "", err
	}
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("abcd")
	<-first
	c.Send("efgh\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
}
