package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Foreign message files (put into new/ or cur/ by other tools) may use bare
// LF line ends and may lack a final line end. POP3 sends messages with CRLF
// line ends (RFC 1939 §3: "all lines ... terminated by a CRLF pair"), and the
// size reported by LIST/STAT must be the size as sent. The normal form used
// here, by both normalizedSize and crlfReader, is:
//
//   - every LF not immediately preceded by CR becomes CRLF;
//   - if the content does not end with LF (including an empty file), CRLF
//     is appended;
//   - every other octet, bare CR included, is passed through unchanged.

// normBufSize is the read buffer of the normalizing reader and the scanner:
// memory stays bounded whatever the line length.
const normBufSize = 32 << 10

var crlf = []byte("\r\n")

// normalizedSize returns the number of octets crlfReader yields for the
// content of r, reading r to EOF through buf (nil: a new buffer of
// normBufSize).
func normalizedSize(r io.Reader, buf []byte) (int64, error) {
	if len(buf) == 0 {
		buf = make([]byte, normBufSize)
	}
	var (
		size   int64
		prevCR bool // the last octet seen was CR
		lastLF bool // the last octet seen was LF
	)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			size += int64(n)
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					break
				}
				if !(i == 0 && prevCR || i > 0 && chunk[i-1] == '\r') {
					size++ // a bare LF gains a CR
				}
				prevCR = false
				chunk = chunk[i+1:]
			}
			prevCR = buf[n-1] == '\r'
			lastLF = buf[n-1] == '\n'
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if !lastLF {
		size += 2
	}
	return size, nil
}

// crlfReader yields the normal form (see above) of the content of r. It
// reads r through a fixed buffer, so a line of any length uses bounded
// memory.
type crlfReader struct {
	r          io.Reader
	buf        []byte
	start, end int    // unconsumed input is buf[start:end]
	pending    []byte // output owed before any further input (a suffix of crlf)
	prevCR     bool   // the last input octet consumed was CR
	lastLF     bool   // the last input octet consumed was LF
	eof        bool   // r returned io.EOF
	done       bool   // the final CRLF, if any, has been queued
	err        error  // sticky read error other than io.EOF
}

// newCRLFReader returns a reader of the normal form of r's content. sizeHint,
// if positive, bounds the size of r's content: the read buffer is made no
// larger than needed for it (and never larger than normBufSize).
func newCRLFReader(r io.Reader, sizeHint int64) *crlfReader {
	n := int64(normBufSize)
	if sizeHint > 0 && sizeHint+1 < n {
		n = max(sizeHint+1, 512)
	}
	return &crlfReader{r: r, buf: make([]byte, n)}
}

// newCRLFReaderBuf is newCRLFReader reading through buf (normBufSize
// octets), which the caller owns again once done with the reader.
func newCRLFReaderBuf(r io.Reader, buf []byte) *crlfReader {
	return &crlfReader{r: r, buf: buf}
}

// Read implements io.Reader.
func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.pending) > 0 {
			k := copy(p[n:], c.pending)
			c.pending = c.pending[k:]
			n += k
			continue
		}
		if c.start == c.end {
			if n > 0 {
				// Hand over what we have rather than block on more input.
				return n, nil
			}
			if c.err != nil {
				return 0, c.err
			}
			if c.eof {
				if !c.done {
					c.done = true
					if !c.lastLF {
						c.pending = crlf
					}
					continue
				}
				return 0, io.EOF
			}
			k, err := c.r.Read(c.buf)
			c.start, c.end = 0, k
			if err == io.EOF {
				c.eof = true
			} else if err != nil {
				c.err = err
			}
			continue
		}
		in := c.buf[c.start:c.end]
		i := bytes.IndexByte(in, '\n')
		if i != 0 {
			if i < 0 {
				i = len(in)
			}
			k := copy(p[n:], in[:i])
			n += k
			c.start += k
			c.prevCR = in[k-1] == '\r'
			c.lastLF = false
			continue
		}
		// in[0] is LF.
		c.start++
		if c.prevCR {
			c.pending = crlf[1:]
		} else {
			c.pending = crlf
		}
		c.prevCR = false
		c.lastLF = true
	}
	return n, nil
}

// errSizeChanged reports a message file whose content no longer has the
// size recorded in the snapshot.
var errSizeChanged = errors.New("store: message size changed since the snapshot")

// exactReader yields exactly size octets of r: it stops at size, and
// returns an error wrapping errSizeChanged if r ends early, so a caller never
// sends more or fewer octets than the snapshot announced.
type exactReader struct {
	r    io.Reader
	left int64
}

// Read implements io.Reader.
func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, fmt.Errorf("%w: %d octets missing: %w", errSizeChanged, e.left, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil
	}
	if e.left == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// WireReader returns the normal form of r's content (every line ending
// in CRLF, ending in CRLF): what Open yields of a Maildir file, for a
// store that keeps such a file's bytes as they are (the shared store's
// migrated blobs). sizeHint, if positive, bounds r's size.
func WireReader(r io.Reader, sizeHint int64) io.Reader { return newCRLFReader(r, sizeHint) }

// WireSize returns the size of the normal form of r's content.
func WireSize(r io.Reader) (int64, error) { return normalizedSize(r, make([]byte, normBufSize)) }
