package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrMessageTooBig is returned by the message reader given to Backend.Data
// once the message exceeds Server.MaxMessageBytes.
var ErrMessageTooBig = errors.New("smtp: message exceeds size limit")

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
}

func newDataReader(r *bufio.Reader, max int64) *dataReader {
	return &dataReader{r: r, max: max}
}

// Read implements io.Reader for Backend.Data.
func (d *dataReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if d.tooBig {
			return n, ErrMessageTooBig
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
func (d *dataReader) process(out []byte) int {
	if d.r.Buffered() == 0 {
		if _, err := d.r.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return 0
		}
	}
	in, _ := d.r.Peek(d.r.Buffered())
	i, o := 0, 0
	st := d.state
loop:
	for i < len(in) && len(out)-o >= 3 {
		if st == stText {
			// Fast path: copy up to the next CR or LF.
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
		switch st {
		case stText:
			if b == '\r' {
				out[o] = '\r'
				o++
				st = stCR
			} else { // '\n': bare LF, stored as CRLF
				o += copy(out[o:], "\r\n")
				st = stBOLBare
			}
		case stCR:
			switch b {
			case '\n':
				out[o] = '\n'
				o++
				st = stBOL
			case '\r':
				out[o] = '\r'
				o++
			default:
				out[o] = b
				o++
				st = stText
			}
		case stBOL, stBOLBare:
			switch b {
			case '.':
				if st == stBOL {
					st = stDot
				} else {
					st = stDotBare
				}
			case '\r':
				out[o] = '\r'
				o++
				st = stCR
			case '\n':
				o += copy(out[o:], "\r\n")
				st = stBOLBare
			default:
				out[o] = b
				o++
				st = stText
			}
		case stDot, stDotBare:
			switch b {
			case '\r':
				if st == stDot {
					st = stDotCR
				} else {
					st = stDotCRBare
				}
			case '\n':
				// "." then bare LF: not an end; keep the line ".".
				o += copy(out[o:], ".\r\n")
				st = stBOLBare
			default:
				// Dot-stuffed line: drop the first dot (RFC 5321 §4.5.2).
				out[o] = b
				o++
				st = stText
			}
		case stDotCR, stDotCRBare:
			if b == '\n' {
				if st == stDotCR {
					// CRLF "." CRLF: end of data.
					d.done = true
					break loop
				}
				// LF "." CRLF: not an end; keep the line ".".
				o += copy(out[o:], ".\r\n")
				st = stBOL
				continue
			}
			// ".\r" then more text: an unstuffed dot, a bare CR.
			out[o] = '\r'
			o++
			switch b {
			case '\r':
				out[o] = '\r'
				o++
				st = stCR
			default:
				out[o] = b
				o++
				st = stText
			}
		}
	}
	d.state = st
	d.r.Discard(i)
	d.n += int64(o)
	if d.n > d.max {
		d.tooBig = true
	}
	return o
}
