package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The IMAP modes speak raw protocol lines (RFC 9051) rather than through a
// client library: the client then does the same small amount of work for
// every server (it counts responses and skips literals, it decodes no
// envelope), so on a machine where client and server share the CPUs the
// figures are the servers'.

// imapConn is one IMAP client connection.
type imapConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	end     time.Time
	tag     int
}

// imapResponse is one server response: its text, CRLFs and literal
// contents left out (a literal is kept as its "{n}" announcement), and the
// sizes of its literals in order.
type imapResponse struct {
	text []byte
	lits []int
}

// readIMAPResponse reads one complete server response (RFC 9051 §2.2.2):
// a line, and while that line ends in a literal announcement "{n}" (or
// "~{n}", a literal8 of RFC 3516, or "{n+}"), the n octets of the literal
// and the line that continues the response after them. The literal
// contents are discarded; text is reused across calls when buf is passed
// back in.
func readIMAPResponse(r *bufio.Reader, buf []byte) (imapResponse, error) {
	resp := imapResponse{text: buf[:0]}
	for {
		line, err := readIMAPLine(r, resp.text)
		if err == io.EOF && len(resp.lits) > 0 {
			err = io.ErrUnexpectedEOF // the response continues after a literal
		}
		if err != nil {
			return resp, err
		}
		n, ok := literalSize(line[len(resp.text):])
		resp.text = line
		if !ok {
			return resp, nil
		}
		if _, err := r.Discard(n); err != nil {
			return resp, fmt.Errorf("literal of %d octets: %w", n, err)
		}
		resp.lits = append(resp.lits, n)
	}
}

// readIMAPLine appends one line to dst, without its CRLF (or bare LF).
func readIMAPLine(r *bufio.Reader, dst []byte) ([]byte, error) {
	for {
		frag, err := r.ReadSlice('\n')
		dst = append(dst, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(frag) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		dst = dst[:len(dst)-1]
		if len(dst) > 0 && dst[len(dst)-1] == '\r' {
			dst = dst[:len(dst)-1]
		}
		return dst, nil
	}
}

// literalSize reports whether line ends in a literal announcement
// (RFC 9051 §4.3: "{" number "}" CRLF; RFC 7888 "{n+}"; RFC 3516 "~{n}")
// and its size.
func literalSize(line []byte) (int, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	digits := line[open+1 : len(line)-1]
	digits = bytes.TrimSuffix(digits, []byte("+"))
	if len(digits) == 0 || len(digits) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// untagged parses "* <n> <KIND> ..." (RFC 9051 §7: EXISTS, EXPUNGE, FETCH)
// and returns n and KIND in upper case.
func untagged(text []byte) (n int, kind string, ok bool) {
	rest, found := bytes.CutPrefix(text, []byte("* "))
	if !found {
		return 0, "", false
	}
	num, rest, found := bytes.Cut(rest, []byte(" "))
	if !found || len(num) == 0 {
		return 0, "", false
	}
	n, err := strconv.Atoi(string(num))
	if err != nil || n < 0 {
		return 0, "", false
	}
	word, _, _ := bytes.Cut(rest, []byte(" "))
	if len(word) == 0 {
		return 0, "", false
	}
	return n, strings.ToUpper(string(word)), true
}

// dialIMAP connects and reads the greeting, which must be "* OK".
func dialIMAP(ctx context.Context, o *options) (*imapConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	end, _ := ctx.Deadline()
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4<<10), timeout: o.timeout, end: end}
	ic.deadline()
	resp, err := readIMAPResponse(ic.r, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !bytes.HasPrefix(resp.text, []byte("* OK")) {
		c.Close()
		return nil, fmt.Errorf("greeting %q", resp.text)
	}
	return ic, nil
}

func (ic *imapConn) deadline() {
	t := time.Now().Add(ic.timeout)
	if !ic.end.IsZero() && ic.end.Before(t) {
		t = ic.end
	}
	ic.c.SetDeadline(t)
}

// send writes one tagged command and returns its tag.
func (ic *imapConn) send(cmd string) (string, error) {
	ic.tag++
	tag := "a" + strconv.Itoa(ic.tag)
	ic.w.WriteString(tag + " " + cmd + "\r\n")
	ic.deadline()
	return tag, ic.w.Flush()
}

// wait reads responses until the tagged completion of tag, passing every
// other response to each (which may be nil), and fails unless it is OK.
// The deadline is re-armed for every response, so a long FETCH is bounded
// by the gap between responses, and by the end of the run.
func (ic *imapConn) wait(tag string, each func(imapResponse) error) error {
	var buf []byte
	prefix := []byte(tag + " ")
	for {
		ic.deadline()
		resp, err := readIMAPResponse(ic.r, buf)
		if err != nil {
			return err
		}
		buf = resp.text
		if rest, ok := bytes.CutPrefix(resp.text, prefix); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return fmt.Errorf("server said %q", resp.text)
			}
			return nil
		}
		if each != nil {
			if err := each(resp); err != nil {
				return err
			}
		}
	}
}

// cmd sends one command and waits for its completion.
func (ic *imapConn) cmd(cmd string, each func(imapResponse) error) error {
	tag, err := ic.send(cmd)
	if err != nil {
		return err
	}
	if err := ic.wait(tag, each); err != nil {
		name, _, _ := strings.Cut(cmd, " ")
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// imapQuote returns s as an IMAP quoted string (RFC 9051 §4.3).
func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// login runs LOGIN (RFC 9051 §6.2.3).
func (ic *imapConn) login(o *options) error {
	return ic.cmd("LOGIN "+imapQuote(o.user)+" "+imapQuote(o.pass), nil)
}

// selectBox runs SELECT of o.mailbox (RFC 9051 §6.3.2) and returns the
// number of messages it reported with EXISTS, which must be at least min.
func (ic *imapConn) selectBox(o *options, min int) (int, error) {
	exists := -1
	err := ic.cmd("SELECT "+imapQuote(o.mailbox), func(r imapResponse) error {
		if n, kind, ok := untagged(r.text); ok && kind == "EXISTS" {
			exists = n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if exists < min {
		return 0, fmt.Errorf("SELECT: %d messages (EXISTS), want at least %d", exists, min)
	}
	return exists, nil
}

// logout sends LOGOUT, waits briefly for its completion and closes.
func (ic *imapConn) logout() {
	ic.timeout = 2 * time.Second
	ic.cmd("LOGOUT", nil)
	ic.c.Close()
}

// countFetches returns a response callback counting "* n FETCH" responses
// into *n, checking with check (if not nil) every one of them.
func countFetches(n *int, check func(imapResponse) error) func(imapResponse) error {
	return func(r imapResponse) error {
		if _, kind, ok := untagged(r.text); !ok || kind != "FETCH" {
			return nil
		}
		*n++
		if check != nil {
			return check(r)
		}
		return nil
	}
}

// runIMAPFetch runs o.msgs sessions one after the other, each: connect,
// LOGIN, SELECT, FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), LOGOUT. A
// session's latency is its wall time from connect to the FETCH's tagged
// OK (LOGOUT excluded); select_ms and fetch_ms are the medians of the
// SELECT and FETCH commands alone. A session whose FETCH returned fewer
// responses than SELECT announced messages counts as an error. Messages
// counts the FETCH responses of the successful sessions.
func runIMAPFetch(ctx context.Context, o *options) Result {
	var col collector
	var sel, fet []float64
	start := time.Now()
	for i := 0; i < o.msgs; i++ {
		if ctx.Err() != nil {
			col.fail(errors.New("duration cap reached"), o.msgs-i)
			break
		}
		wall, s, f, n, octets, err := imapFetchSession(ctx, o)
		if err != nil {
			col.fail(err, 1)
			continue
		}
		col.okN(wall, octets, n)
		sel, fet = append(sel, s), append(fet, f)
	}
	r := col.result(o, time.Since(start))
	r.SelectMs, r.FetchMs = median(sel), median(fet)
	return r
}

// imapFetchSession runs one session of runIMAPFetch; it returns its wall
// time, the SELECT and FETCH times in milliseconds, the number of messages
// fetched and the octets of their response lines.
func imapFetchSession(ctx context.Context, o *options) (wall time.Duration, selMs, fetchMs float64, n, octets int, err error) {
	t0 := time.Now()
	ic, err := dialIMAP(ctx, o)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	defer ic.logout()
	if err := ic.login(o); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	t1 := time.Now()
	exists, err := ic.selectBox(o, 1)
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	t2 := time.Now()
	err = ic.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", countFetches(&n, func(r imapResponse) error {
		octets += len(r.text)
		if !bytes.Contains(r.text, []byte("ENVELOPE")) {
			return fmt.Errorf("FETCH without ENVELOPE: %.200q", r.text)
		}
		return nil
	}))
	t3 := time.Now()
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	if n != exists {
		return 0, 0, 0, 0, 0, fmt.Errorf("FETCH 1:*: %d responses for %d messages", n, exists)
	}
	return t3.Sub(t0), ms(t2.Sub(t1)), ms(t3.Sub(t2)), n, octets, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runIMAPBody runs one session: connect, LOGIN, SELECT, then
// UID FETCH 1:* BODY.PEEK[] (RFC 9051 §6.4.5), counting the messages and
// octets of the literals. The rate is over the UID FETCH command alone
// (from its write to its tagged OK; select_ms is the SELECT's time), and
// its one latency is that command's time. A message whose literal is not
// -size octets, or a count short of SELECT's EXISTS, is an error.
func runIMAPBody(ctx context.Context, o *options) Result {
	var col collector
	ic, err := dialIMAP(ctx, o)
	if err != nil {
		col.fail(err, 1)
		return col.result(o, 0)
	}
	defer ic.logout()
	if err := ic.login(o); err != nil {
		col.fail(err, 1)
		return col.result(o, 0)
	}
	t0 := time.Now()
	exists, err := ic.selectBox(o, 1)
	if err != nil {
		col.fail(err, 1)
		return col.result(o, 0)
	}
	t1 := time.Now()
	n, octets := 0, 0
	err = ic.cmd("UID FETCH 1:* BODY.PEEK[]", countFetches(&n, func(r imapResponse) error {
		if len(r.lits) != 1 {
			return fmt.Errorf("FETCH with %d literals: %.200q", len(r.lits), r.text)
		}
		if o.size > 0 && r.lits[0] != o.size {
			return fmt.Errorf("BODY[] of %d octets, want %d", r.lits[0], o.size)
		}
		octets += r.lits[0]
		return nil
	}))
	d := time.Since(t1)
	if err == nil && n != exists {
		err = fmt.Errorf("UID FETCH 1:*: %d messages of %d", n, exists)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("duration cap reached: %w", err)
		}
		col.fail(err, max(exists, 1))
		return col.result(o, d)
	}
	col.okN(d, octets, n)
	r := col.result(o, d)
	r.SelectMs, r.FetchMs = ms(t1.Sub(t0)), ms(d)
	return r
}

// idleSession is an IMAP session in IDLE (RFC 2177, RFC 9051 §6.3.13) whose
// reader reports every "* n EXISTS" with the time it was read.
type idleSession struct {
	ic     *imapConn
	tag    string
	exists int // from SELECT
	events chan idleEvent
	done   chan error // the reader's end: nil after the tagged OK of DONE
}

type idleEvent struct {
	n  int
	at time.Time
}

// startIdle connects, logs in, selects o.mailbox and enters IDLE; once the
// server's continuation "+" arrived, a reader goroutine reports EXISTS
// responses on events (dropping them when nobody listens and the buffer is
// full). The deadline of an idle session is the end of the run.
func startIdle(ctx context.Context, o *options) (*idleSession, error) {
	ic, err := dialIMAP(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := ic.login(o); err != nil {
		ic.c.Close()
		return nil, err
	}
	n, err := ic.selectBox(o, 0)
	if err != nil {
		ic.c.Close()
		return nil, err
	}
	tag, err := ic.send("IDLE")
	if err != nil {
		ic.c.Close()
		return nil, err
	}
	for {
		ic.deadline()
		resp, err := readIMAPResponse(ic.r, nil)
		if err != nil {
			ic.c.Close()
			return nil, fmt.Errorf("IDLE: %w", err)
		}
		if bytes.HasPrefix(resp.text, []byte("+")) {
			break
		}
		if bytes.HasPrefix(resp.text, []byte(tag+" ")) {
			ic.c.Close()
			return nil, fmt.Errorf("IDLE: server said %q", resp.text)
		}
	}
	s := &idleSession{ic: ic, tag: tag, exists: n, events: make(chan idleEvent, 64), done: make(chan error, 1)}
	if end, ok := ctx.Deadline(); ok {
		ic.c.SetDeadline(end)
	} else {
		ic.c.SetDeadline(time.Time{})
	}
	go s.read()
	return s, nil
}

func (s *idleSession) read() {
	var buf []byte
	for {
		resp, err := readIMAPResponse(s.ic.r, buf)
		if err != nil {
			s.done <- err
			return
		}
		at := time.Now()
		buf = resp.text
		if n, kind, ok := untagged(resp.text); ok && kind == "EXISTS" {
			select {
			case s.events <- idleEvent{n, at}:
			default:
			}
			continue
		}
		if rest, ok := bytes.CutPrefix(resp.text, []byte(s.tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				s.done <- fmt.Errorf("IDLE: server said %q", resp.text)
			} else {
				s.done <- nil
			}
			return
		}
	}
}

// waitExists waits until the session has seen EXISTS of at least n, or
// until limit, and returns when that EXISTS was read.
func (s *idleSession) waitExists(n int, limit time.Duration) (time.Time, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case ev := <-s.events:
			if ev.n >= n {
				return ev.at, nil
			}
		case err := <-s.done:
			s.done <- err
			if err == nil {
				err = errors.New("IDLE ended")
			}
			return time.Time{}, err
		case <-t.C:
			return time.Time{}, fmt.Errorf("no EXISTS %d within %v", n, limit)
		}
	}
}

// ended reports whether the session's reader has stopped.
func (s *idleSession) ended() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// stop sends DONE, waits for the IDLE's completion, logs out and closes.
func (s *idleSession) stop() error {
	s.ic.c.SetDeadline(time.Now().Add(5 * time.Second))
	s.ic.w.WriteString("DONE\r\n")
	err := s.ic.w.Flush()
	if err == nil {
		err = <-s.done
	}
	if err == nil {
		s.ic.logout()
	} else {
		s.ic.c.Close()
	}
	return err
}

// deliverer sends messages over SMTP (or LMTP with -lmtp) to
// -smtp-addr, one connection for the whole run.
type deliverer struct {
	o     options
	sc    *smtpConn
	raw   [variants][]byte
	stuff [variants][]byte
	i     int
}

func newDeliverer(ctx context.Context, o *options) (*deliverer, error) {
	if o.smtpAddr == "" {
		return nil, errors.New("need -smtp-addr")
	}
	d := &deliverer{o: *o}
	d.o.addr = o.smtpAddr
	rng := rand.New(rand.NewPCG(uint64(o.seed), 99))
	for i := range variants {
		d.raw[i], d.stuff[i] = makeMessage(rng, o.size, i)
	}
	var err error
	d.sc, err = dialSMTP(ctx, &d.o)
	return d, err
}

// deliver sends one message and returns when its 250 was read.
func (d *deliverer) deliver() (time.Time, error) {
	k := d.i % variants
	d.i++
	if err := d.sc.send(&d.o, d.raw[k], d.stuff[k]); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// runIMAPIdle measures the delay from an SMTP 250 to the EXISTS line in
// an IDLE session: one session in IDLE on o.mailbox, then o.msgs
// deliveries one at a time over SMTP (LMTP with -lmtp) to -smtp-addr, each
// waiting for its EXISTS before the next. The latency runs from reading
// the 250 to reading the EXISTS; an EXISTS read before the 250 (the server
// told the IDLE session first) counts as 0 and in "early".
func runIMAPIdle(ctx context.Context, o *options) Result {
	var col collector
	start := time.Now()
	s, err := startIdle(ctx, o)
	if err != nil {
		col.fail(err, o.msgs)
		return col.result(o, time.Since(start))
	}
	d, err := newDeliverer(ctx, o)
	if err != nil {
		s.stop()
		col.fail(err, o.msgs)
		return col.result(o, time.Since(start))
	}
	early := 0
	next := s.exists + 1
	for i := 0; i < o.msgs; i++ {
		if ctx.Err() != nil {
			col.fail(errors.New("duration cap reached"), o.msgs-i)
			break
		}
		t250, err := d.deliver()
		if err != nil {
			col.fail(fmt.Errorf("delivery %d: %w", i+1, err), o.msgs-i)
			break
		}
		at, err := s.waitExists(next, o.timeout)
		if err != nil && ctx.Err() != nil {
			col.fail(fmt.Errorf("duration cap reached: %w", err), o.msgs-i)
			break
		}
		if err != nil {
			if s.ended() {
				col.fail(err, o.msgs-i)
				break
			}
			col.fail(err, 1)
			next++ // a late EXISTS for this one satisfies the next wait
			continue
		}
		next++
		lat := at.Sub(t250)
		if lat < 0 {
			lat, early = 0, early+1
		}
		col.ok(lat, o.size)
	}
	d.sc.quit()
	if err := s.stop(); err != nil {
		col.fail(fmt.Errorf("DONE: %w", err), 1)
	}
	r := col.result(o, time.Since(start))
	r.Early = early
	return r
}

// runIMAPIdleMany opens o.conns sessions in IDLE on o.mailbox (at most 8
// connecting at a time). With -smtp-addr it then delivers one message and
// waits for its EXISTS in every session (the latencies are from the 250
// to each session's EXISTS). With -ready it then creates that file and
// holds every session open until the file is removed (or the run ends),
// so that the caller can measure the server with all sessions present.
// Messages counts the sessions that reached IDLE (and saw the EXISTS).
func runIMAPIdleMany(ctx context.Context, o *options) Result {
	var col collector
	start := time.Now()
	sessions := make([]*idleSession, o.conns)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := startIdle(ctx, o)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("session %d: %w", i+1, err)
				}
				mu.Unlock()
				return
			}
			sessions[i] = s
		}()
	}
	wg.Wait()
	var live []*idleSession
	for _, s := range sessions {
		if s != nil {
			live = append(live, s)
		}
	}
	if firstErr != nil {
		col.fail(firstErr, o.conns-len(live))
	}
	defer func() {
		for _, s := range live {
			s.stop()
		}
	}()
	if o.smtpAddr != "" && len(live) > 0 {
		fanOut(ctx, o, live, &col)
	} else {
		for range live {
			col.ok(0, 0)
		}
	}
	if o.ready != "" && len(live) > 0 {
		if err := os.WriteFile(o.ready, []byte(strconv.Itoa(len(live))+"\n"), 0o644); err != nil {
			col.fail(err, 1)
			return col.result(o, time.Since(start))
		}
		for ctx.Err() == nil {
			if _, err := os.Stat(o.ready); errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return col.result(o, time.Since(start))
}

// fanOut delivers one message to -smtp-addr and records, for every session
// of live, the delay from the 250 to its EXISTS (or its failure).
func fanOut(ctx context.Context, o *options, live []*idleSession, col *collector) {
	d, err := newDeliverer(ctx, o)
	if err != nil {
		col.fail(err, len(live))
		return
	}
	t250, err := d.deliver()
	d.sc.quit()
	if err != nil {
		col.fail(err, len(live))
		return
	}
	var wg sync.WaitGroup
	for _, s := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := s.waitExists(s.exists+1, o.timeout)
			if err != nil {
				col.fail(err, 1)
				return
			}
			col.ok(max(at.Sub(t250), 0), 0)
		}()
	}
	wg.Wait()
}
