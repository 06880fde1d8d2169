package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"postoffice/internal/textio"
)

// ErrMessageTooBig is returned by the message reader given to Backend.Data
// once the message exceeds Server.MaxMessageBytes.
var ErrMessageTooBig = errors.New("smtp: message exceeds size limit")

// BareNewline is the policy for bare CR, bare LF and NUL in message data
// (RFC 5321 §2.3.8: lines end in CRLF only; a bare CR or LF SHOULD NOT be
// sent, and NUL is not text), in the manner of Postfix 3.9's
// smtpd_forbid_bare_newline. In every mode only CRLF "." CRLF ends DATA,
// so that no bare line end can smuggle a second message (CVE-2023-51764).
type BareNewline uint8

const (
	// BareNewlineNormalize (the zero value, the default): a bare LF in
	// DATA ends a line and is stored as CRLF; a dot after it is handled
	// as at any line start (RFC 5321 §4.5.2); bare CR and NUL are kept.
	BareNewlineNormalize BareNewline = iota
	// BareNewlineReject: a message holding a bare LF or a bare CR gets
	// "550 5.5.2 Error: bare <LF> received" (or <CR>), one holding NUL
	// "550 5.6.0 Error: NUL received"; it is read to its end and nothing is
	// stored. BDAT chunks are checked alike, except with BODY=BINARYMIME,
	// whose octets are arbitrary (RFC 3030 §3).
	BareNewlineReject
	// BareNewlineAccept: nothing is refused and the engine changes no line
	// end: only CRLF ends a line (RFC 5321 §2.3.8), so a bare LF is an
	// octet of a line's text and a dot after it is not a line's first
	// character; the data goes to the backend as sent, less the dots
	// removed after CRLF (RFC 5321 §4.5.2). The Maildir store still writes
	// every LF as CRLF (its normal form, which POP3 sizes rest on).
	BareNewlineAccept
)

// ParseBareNewline returns the policy named "normalize", "reject" or
// "accept".
func ParseBareNewline(s string) (BareNewline, bool) {
	switch s {
	case "normalize", "":
		return BareNewlineNormalize, true
	case "reject":
		return BareNewlineReject, true
	case "accept":
		return BareNewlineAccept, true
	}
	return 0, false
}

// Replies for data refused under BareNewlineReject: 550 as Postfix's
// smtpd_forbid_bare_newline_reject_code, which says "Error: bare <LF>
// received" with 5.5.2 (a syntax error of the data); NUL is a media error
// (RFC 3463 X.6.0: other or undefined media error).
const codeDataRefused = 550

var (
	errBareLF = &Error{Code: codeDataRefused, Enhanced: "5.5.2", Message: "Error: bare <LF> received"}
	errBareCR = &Error{Code: codeDataRefused, Enhanced: "5.5.2", Message: "Error: bare <CR> received"}
	errNUL    = &Error{Code: codeDataRefused, Enhanced: "5.6.0", Message: "Error: NUL received"}
)

// lineCheck finds the first bare LF, bare CR or NUL in a stream of
// message octets handed to it in pieces.
type lineCheck struct {
	cr  bool   // the last octet seen was CR
	bad *Error // what was found; nil so far
}

// scan checks the octets p, which follow those seen before.
func (c *lineCheck) scan(p []byte) {
	if c.bad != nil {
		return
	}
	for _, b := range p {
		switch {
		case c.cr && b != '\n':
			c.bad = errBareCR
		case b == '\n' && !c.cr:
			c.bad = errBareLF
		case b == 0:
			c.bad = errNUL
		}
		if c.bad != nil {
			return
		}
		c.cr = b == '\r'
	}
}

// end checks the end of the data: a CR last is bare.
func (c *lineCheck) end() {
	if c.bad == nil && c.cr {
		c.bad = errBareCR
	}
}

// dataState is where the DATA reader is within the current line.
type dataState uint8

const (
	stBOL       dataState = iota // line start after CRLF, or start of data
	stBOLBare                    // line start after a bare LF
	stText                       // inside a line
	stCR                         // after a CR inside a line (already emitted)
	stDot                        // after "." at stBOL
	stDotBare                    // after "." at stBOLBare
	stDotCR                      // after ".\r" at stBOL
	stDotCRBare                  // after ".\r" at stBOLBare
	stEnd                        // CRLF "." CRLF consumed: end of data
)

// dataReader streams the text of a DATA command (RFC 5321 §4.1.1.4) from a
// buffered connection, one buffer at a time; it never holds a whole line.
//
// Policy, chosen against SMTP smuggling (CVE-2023-51764 and kin):
//   - Only CRLF "." CRLF ends the data; the CRLF before the dot belongs to
//     the message. At the very start of the data ".\r\n" alone ends it (an
//     empty message).
//   - A bare LF is stored as CRLF. A bare CR is kept as it is and does not
//     end a line.
//   - RFC 5321 §4.5.2: the first dot of a line that starts with a dot is
//     removed, at any line start (after CRLF or after a bare LF), except
//     that a line holding only a dot that did not end the data (as in
//     "\n.\n", "\n.\r\n", "\r\n.\n") is stored as the line "." so that no
//     text disappears: "\n.\n" is stored as "\r\n.\r\n". POP3 dot-stuffs
//     it again on the way out.
//   - NUL and 8-bit octets pass unchanged.
//
// The output is limited to max octets: beyond it Read returns
// ErrMessageTooBig. drain consumes the rest up to the terminator.
type dataReader struct {
	r      *bufio.Reader
	state  dataState
	max    int64
	n      int64 // octets produced
	tooBig bool
	done   bool  // terminator consumed
	err    error // read error of the connection (EOF is io.ErrUnexpectedEOF)

	pend    [3]byte // output produced but not yet returned (small reads)
	pendOff int
	pendN   int

	// dl, if set, is told of each read of the connection (the data
	// deadline grows with the octets it brings).
	dl *dataDeadline

	policy BareNewline
	check  *lineCheck // BareNewlineReject: the input up to the terminator
}

func newDataReader(r *bufio.Reader, max int64) *dataReader {
	return &dataReader{r: r, max: max}
}

// setPolicy sets the bare-newline policy, before the first Read.
func (d *dataReader) setPolicy(p BareNewline) {
	d.policy = p
	if p == BareNewlineReject {
		d.check = &lineCheck{}
	}
}

// refused is the reply for data that the policy refuses, nil if none.
func (d *dataReader) refused() *Error {
	if d.check == nil {
		return nil
	}
	return d.check.bad
}

// Read implements io.Reader for Backend.Data.
func (d *dataReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if d.tooBig {
			return n, ErrMessageTooBig
		}
		if e := d.refused(); e != nil {
			return n, e
		}
		if d.pendOff < d.pendN {
			c := copy(p[n:], d.pend[d.pendOff:d.pendN])
			d.pendOff += c
			n += c
			continue
		}
		if d.done || d.err != nil {
			break
		}
		if n > 0 && d.r.Buffered() == 0 {
			break // return what we have rather than block
		}
		if len(p)-n < len(d.pend) {
			d.pendOff, d.pendN = 0, d.process(d.pend[:])
			continue
		}
		n += d.process(p[n:])
	}
	switch {
	case d.tooBig:
		return n, ErrMessageTooBig
	case d.refused() != nil:
		return n, d.refused()
	case n > 0:
		return n, nil
	case d.done:
		return 0, io.EOF
	case d.err != nil:
		return 0, d.err
	}
	return 0, nil
}

// drain consumes the data up to and including the terminator, discarding
// it. It returns nil once the terminator is read, else the read error.
func (d *dataReader) drain() error {
	var buf [4096]byte
	for !d.done && d.err == nil {
		d.process(buf[:])
	}
	if d.done {
		return nil
	}
	return d.err
}

// process converts buffered input into out (len(out) >= 3) and returns the
// number of octets produced. It blocks only when nothing is buffered.
//
// Inside a line, text up to the next CR or LF is copied in one go: the
// fast path, written out here because it runs once per line and is too big
// for the compiler to inline as a function. Every other octet is one step
// of the state machine, the method named after the state it leaves; a step
// writes at most 3 octets, hence the room kept in out.
func (d *dataReader) process(out []byte) int {
	if d.r.Buffered() == 0 && !d.fill() {
		return 0
	}
	in, _ := d.r.Peek(d.r.Buffered())
	i, o := 0, 0
	st := d.state
loop:
	for i < len(in) && len(out)-o >= 3 {
		if st == stText {
			// Fast path: line text up to the next CR or LF, or as much
			// as fits, passes unchanged (NUL and 8-bit octets too).
			seg := in[i:min(len(in), i+len(out)-o)]
			if j := bytes.IndexByte(seg, '\n'); j >= 0 {
				seg = seg[:j]
			}
			if j := bytes.IndexByte(seg, '\r'); j >= 0 {
				seg = seg[:j]
			}
			o += copy(out[o:], seg)
			i += len(seg)
			if i == len(in) || len(out)-o < 3 {
				break
			}
		}
		b := in[i]
		i++
		if b == '\n' && d.policy == BareNewlineAccept && (st == stText || st == stBOL || st == stDot) {
			// Accept: a bare LF is line text, not a line end. A line
			// that starts with a dot has more text after it, so that
			// dot is removed (RFC 5321 §4.5.2).
			out[o] = '\n'
			o++
			st = stText
			continue
		}
		switch st {
		case stText:
			st, o = st.lineBreak(b, out, o)
		case stCR:
			st, o = st.afterCR(b, out, o)
		case stBOL, stBOLBare:
			st, o = st.lineStart(b, out, o)
		case stDot, stDotBare:
			st, o = st.afterDot(b, out, o)
		case stDotCR, stDotCRBare:
			if st, o = st.afterDotCR(b, out, o); st == stEnd {
				d.done = true
				break loop
			}
		}
	}
	d.state = st
	if d.check != nil {
		d.check.scan(in[:i])
	}
	d.consume(i, o)
	return o
}

// fill waits for input on the connection, called when none is buffered.
// It reports whether some arrived; if not it records the read error, the
// end of the input before the terminator being io.ErrUnexpectedEOF.
func (d *dataReader) fill() bool {
	d.dl.before()
	_, err := d.r.Peek(1)
	d.dl.after(d.r.Buffered())
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
		return false
	}
	return true
}

// consume discards the i octets of input read from the connection and
// counts the o octets produced against the size limit.
func (d *dataReader) consume(i, o int) {
	d.r.Discard(i)
	d.n += int64(o)
	if d.n > d.max {
		d.tooBig = true
	}
}

// Each step below takes one octet b in state st, writes what it produces
// (at most 3 octets) to out from o on, and returns the next state and the
// new end of the output.

// lineBreak is the CR or LF that stopped the fast path. A CR is emitted and
// may start a CRLF; a bare LF ends the line and is stored as CRLF.
func (st dataState) lineBreak(b byte, out []byte, o int) (dataState, int) {
	if b == '\r' {
		out[o] = '\r'
		return stCR, o + 1
	}
	return stBOLBare, o + copy(out[o:], "\r\n")
}

// afterCR is the octet after a CR inside a line. LF completes the CRLF
// and starts a line; another CR may yet start a CRLF; anything else makes
// the CR a bare CR, kept as it is, and the line goes on.
func (st dataState) afterCR(b byte, out []byte, o int) (dataState, int) {
	out[o] = b
	switch b {
	case '\n':
		return stBOL, o + 1
	case '\r':
		return stCR, o + 1
	}
	return stText, o + 1
}

// lineStart is the first octet of a line (st is stBOL or stBOLBare). A
// dot is held back: it may be the terminator, a line of its own, or a
// stuffed dot. CR may start an empty line's CRLF; a bare LF ends an empty
// line, stored as CRLF; anything else starts the line's text.
func (st dataState) lineStart(b byte, out []byte, o int) (dataState, int) {
	switch b {
	case '.':
		if st == stBOL {
			return stDot, o
		}
		return stDotBare, o
	case '\r':
		out[o] = '\r'
		return stCR, o + 1
	case '\n':
		return stBOLBare, o + copy(out[o:], "\r\n")
	}
	out[o] = b
	return stText, o + 1
}

// afterDot is the octet after a dot that starts a line (st is stDot or
// stDotBare). CR may make ".\r\n"; a bare LF ends a line holding only a
// dot, which is not the terminator and is kept as the line "."; anything
// else starts the line's text and the leading dot is removed.
func (st dataState) afterDot(b byte, out []byte, o int) (dataState, int) {
	switch b {
	case '\r':
		if st == stDot {
			return stDotCR, o
		}
		return stDotCRBare, o
	case '\n':
		// "." then bare LF: not an end; keep the line ".".
		return stBOLBare, o + copy(out[o:], ".\r\n")
	}
	// Dot-stuffed line: drop the first dot (RFC 5321 §4.5.2).
	out[o] = b
	return stText, o + 1
}

// afterDotCR is the octet after ".\r" at a line start (st is stDotCR or
// stDotCRBare). LF after a CRLF line end is the terminator: stEnd, nothing
// produced. LF after a bare-LF line end is not a terminator (against SMTP
// smuggling) and the line "." is kept. Anything else starts the line's
// text: the leading dot is removed (RFC 5321 §4.5.2) and the CR is a bare
// CR, kept.
func (st dataState) afterDotCR(b byte, out []byte, o int) (dataState, int) {
	if b == '\n' {
		if st == stDotCR {
			// CRLF "." CRLF: end of data (RFC 5321 §4.1.1.4).
			return stEnd, o
		}
		// LF "." CRLF: not an end; keep the line ".".
		return stBOL, o + copy(out[o:], ".\r\n")
	}
	// ".\r" then more text: the dot removed, a bare CR kept.
	out[o] = '\r'
	out[o+1] = b
	if b == '\r' {
		return stCR, o + 2
	}
	return stText, o + 2
}

// dataDeadline bounds a whole DATA or BDAT request by a minimum average data
// rate, as Postfix 3.7's smtpd_min_data_rate with smtpd_per_request_deadline
// does: the request starts with the block timeout as its time left; each
// read of the connection uses up the time it waits, and the n octets it
// brings add n/rate seconds, never beyond the block timeout. A client that
// trickles an octet just before each block timeout (RFC 5321 §4.5.3.2.5
// bounds each wait, not the whole) thus runs out of time, while one that
// sends at the rate or faster may wait up to the block timeout at each
// read, as before. Time the backend spends between reads is not charged.
//
// The time left becomes a read limit on the session's GuardConn before each
// read, so it caps the deadline textio sets for that read (under TLS too).
type dataDeadline struct {
	guard *textio.GuardConn
	block time.Duration
	rate  int64         // octets per second; 0: no minimum, nothing to do
	left  time.Duration // time the request may still wait in reads
	start time.Time     // start of the current read
	cut   bool          // the current read is limited by left, not block
	n     int64         // octets received
}

// startDataDeadline starts the deadline of one DATA command or BDAT chunk.
func (s *session) startDataDeadline() *dataDeadline {
	return &dataDeadline{guard: s.guard, block: s.srv.dataTimeout(), rate: s.srv.MinDataRate, left: s.srv.dataTimeout()}
}

// before is called before each read of the connection.
func (d *dataDeadline) before() {
	if d == nil || d.rate <= 0 {
		return
	}
	d.start = time.Now()
	d.cut = d.left < d.block
	d.guard.SetReadLimit(d.start.Add(d.left))
}

// after is called after each read of the connection, with the number of
// octets it brought.
func (d *dataDeadline) after(n int) {
	if d == nil || d.rate <= 0 {
		return
	}
	d.left -= time.Since(d.start)
	if n > 0 {
		d.n += int64(n)
		d.left += time.Duration(int64(n) * int64(time.Second) / d.rate)
	}
	d.left = min(d.left, d.block)
}

// stop removes the read limit.
func (d *dataDeadline) stop() {
	if d.rate > 0 {
		d.guard.SetReadLimit(time.Time{})
	}
}

// missed reports whether err is a timeout that the minimum rate caused:
// the read was limited by the time left rather than the block timeout.
func (d *dataDeadline) missed(err error) bool {
	var ne net.Error
	return d.rate > 0 && d.cut && errors.As(err, &ne) && ne.Timeout()
}

// rateReader reports the octets read through it to a dataDeadline.
type rateReader struct {
	r  io.Reader
	dl *dataDeadline
}

func (r rateReader) Read(p []byte) (int, error) {
	r.dl.before()
	n, err := r.r.Read(p)
	r.dl.after(n)
	return n, err
}

// dataReadFailed is readFailed for the data of DATA or BDAT: when the
// minimum data rate was not met it says so, with the reply of a timeout
// (421 4.4.2, RFC 5321 §4.5.3.2: the server may close after its timeout).
func (s *session) dataReadFailed(dl *dataDeadline, what string, err error) {
	if !dl.missed(err) {
		s.readFailed(what, err)
		return
	}
	s.log.Info("timeout: minimum data rate not met", "waiting_for", what, "min_rate", dl.rate, "octets", dl.n)
	s.replyf(codeUnavailable, "4.4.2", "%s Timeout exceeded: data rate below %d octets/s, closing connection (conn %s)", s.host, dl.rate, s.info.ID)
	s.conn.Flush()
}
