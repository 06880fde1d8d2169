package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// variants is the number of distinct random messages each SMTP worker
// rotates through (generating a body per message would load the client).
const variants = 4

// smtpConn is one client connection.
type smtpConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	end     time.Time // hard end of the run
}

// dialSMTP connects, reads the greeting and sends EHLO.
func dialSMTP(ctx context.Context, o *options) (*smtpConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	end, _ := ctx.Deadline()
	sc := &smtpConn{c: c, r: bufio.NewReaderSize(c, 16<<10), w: bufio.NewWriterSize(c, 64<<10), timeout: o.timeout, end: end}
	if err := sc.expect(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	hello := "EHLO" // RFC 2033 §4.1: LMTP greets with LHLO
	if o.lmtp {
		hello = "LHLO"
	}
	sc.w.WriteString(hello + " loadgen.example\r\n")
	if err := sc.flush(); err != nil {
		c.Close()
		return nil, err
	}
	if err := sc.expect(250); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return sc, nil
}

// deadline arms the connection's deadline for one exchange.
func (sc *smtpConn) deadline() {
	t := time.Now().Add(sc.timeout)
	if !sc.end.IsZero() && sc.end.Before(t) {
		t = sc.end
	}
	sc.c.SetDeadline(t)
}

func (sc *smtpConn) flush() error {
	sc.deadline()
	return sc.w.Flush()
}

// expect reads one (possibly multiline) reply and checks its code.
func (sc *smtpConn) expect(code int) error {
	sc.deadline()
	for {
		line, err := sc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("short reply %q", line)
		}
		got, err := strconv.Atoi(string(line[:3]))
		if err != nil {
			return fmt.Errorf("bad reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		if got != code {
			return fmt.Errorf("want %d, got %q", code, trimCRLF(line))
		}
		return nil
	}
}

func trimCRLF(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// send runs one mail transaction with message raw (stuffed is its DATA
// form).
func (sc *smtpConn) send(o *options, raw, stuffed []byte) error {
	mail := "MAIL FROM:<" + o.from + "> SIZE=" + strconv.Itoa(len(raw)) + "\r\n"
	if o.lmtp { // Dovecot's LMTP refuses the SIZE parameter (RFC 1870) with 555
		mail = "MAIL FROM:<" + o.from + ">\r\n"
	}
	rcpt := "RCPT TO:<" + o.to + ">\r\n"
	if o.bdat {
		bdat := "BDAT " + strconv.Itoa(len(raw)) + " LAST\r\n"
		if o.pipelining {
			// RFC 3030 §4.2 with RFC 2920: BDAT may be pipelined.
			sc.w.WriteString(mail)
			sc.w.WriteString(rcpt)
			sc.w.WriteString(bdat)
			sc.w.Write(raw)
			if err := sc.flush(); err != nil {
				return err
			}
			for _, c := range []int{250, 250, 250} {
				if err := sc.expect(c); err != nil {
					return err
				}
			}
			return nil
		}
		for _, cmd := range []string{mail, rcpt} {
			sc.w.WriteString(cmd)
			if err := sc.flush(); err != nil {
				return err
			}
			if err := sc.expect(250); err != nil {
				return fmt.Errorf("%s: %w", cmd[:4], err)
			}
		}
		sc.w.WriteString(bdat)
		sc.w.Write(raw)
		if err := sc.flush(); err != nil {
			return err
		}
		return sc.expect(250)
	}
	if o.pipelining {
		// RFC 2920 §3.1: DATA is the last command of a group.
		sc.w.WriteString(mail)
		sc.w.WriteString(rcpt)
		sc.w.WriteString("DATA\r\n")
		if err := sc.flush(); err != nil {
			return err
		}
		for _, c := range []int{250, 250, 354} {
			if err := sc.expect(c); err != nil {
				return err
			}
		}
	} else {
		for _, step := range []struct {
			cmd  string
			code int
		}{{mail, 250}, {rcpt, 250}, {"DATA\r\n", 354}} {
			sc.w.WriteString(step.cmd)
			if err := sc.flush(); err != nil {
				return err
			}
			if err := sc.expect(step.code); err != nil {
				return fmt.Errorf("%s: %w", step.cmd[:4], err)
			}
		}
	}
	sc.w.Write(stuffed)
	if err := sc.flush(); err != nil {
		return err
	}
	if err := sc.expect(250); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return nil
}

// quit sends QUIT, waits briefly for 221 and closes.
func (sc *smtpConn) quit() {
	sc.w.WriteString("QUIT\r\n")
	if sc.flush() == nil {
		sc.expect(221)
	}
	sc.c.Close()
}

// runSMTP runs o.conns workers of o.msgs messages each.
func runSMTP(ctx context.Context, o *options) Result {
	return runWorkers(ctx, o, smtpWorker)
}

// smtpWorker sends o.msgs messages, over one connection or one per message.
func smtpWorker(ctx context.Context, o *options, w int, col *collector) {
	rng := rand.New(rand.NewPCG(uint64(o.seed), uint64(w)))
	var raws, stuffs [variants][]byte
	for i := range variants {
		raws[i], stuffs[i] = makeMessage(rng, o.size, w*variants+i)
	}
	var sc *smtpConn
	defer func() {
		if sc != nil {
			sc.quit()
		}
	}()
	for i := 0; i < o.msgs; i++ {
		if ctx.Err() != nil {
			col.fail(fmt.Errorf("duration cap reached"), o.msgs-i)
			return
		}
		t0 := time.Now()
		if sc == nil {
			var err error
			if sc, err = dialSMTP(ctx, o); err != nil {
				col.fail(err, 1)
				continue
			}
		}
		raw, stuffed := raws[i%variants], stuffs[i%variants]
		if err := sc.send(o, raw, stuffed); err != nil {
			col.fail(err, 1)
			sc.c.Close()
			sc = nil
			continue
		}
		if o.newConn {
			sc.quit()
			sc = nil
		}
		col.ok(time.Since(t0), len(raw))
	}
}
