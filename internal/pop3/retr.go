package pop3

import (
	"bufio"
	"errors"
	"io"
	"sync"
)

// messageBufSize is the read buffer for streaming a message out. Lines
// longer than this pass through in pieces, so memory stays bounded whatever
// the message holds.
const messageBufSize = 32 << 10

var messageReaders = sync.Pool{
	New: func() any { return bufio.NewReaderSize(nil, messageBufSize) },
}

// writeDotStuffed copies a message from r to w as the body of a multi-line
// reply and terminates it (RFC 1939 §3): every line that begins with '.'
// gets one more '.' in front, the first line included, and a line holding a
// single '.' ends the reply.
//
// bodyLines < 0 copies the whole message (RETR). bodyLines >= 0 copies the
// headers, the blank line that ends them and at most bodyLines lines of the
// body (TOP, RFC 1939 §7). A message without a blank line is all headers.
//
// The content ends in CRLF by the Maildrop.Open contract, so the terminator
// follows it directly; if it does not, CRLF is added first so the '.' is on a
// line of its own. Lines of any length are handled: ReadSlice hands them over
// in buffer-sized pieces and only the first piece of a line is stuffed.
// It returns the number of message octets copied, before stuffing.
func writeDotStuffed(w *bufio.Writer, r io.Reader, bodyLines int64) (n int64, err error) {
	br := messageReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		messageReaders.Put(br)
	}()

	var (
		lineStart  = true // the next octet read begins a line
		inHeader   = true // TOP: the blank line ending the headers is not yet seen
		prev, last byte   // the last two octets written, for the terminator
		wrote      bool
	)
loop:
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if lineStart {
				if bodyLines >= 0 {
					if inHeader {
						if isBlankLine(chunk) {
							inHeader = false
						}
					} else {
						if bodyLines == 0 {
							break loop
						}
						bodyLines--
					}
				}
				// RFC 1939 §3: a line beginning with the termination octet is
				// byte-stuffed by pre-pending the termination octet.
				if chunk[0] == '.' {
					if err := w.WriteByte('.'); err != nil {
						return n, err
					}
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return n, err
			}
			n += int64(len(chunk))
			if len(chunk) >= 2 {
				prev, last = chunk[len(chunk)-2], chunk[len(chunk)-1]
			} else {
				prev, last = last, chunk[0]
			}
			wrote = true
			lineStart = chunk[len(chunk)-1] == '\n'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			break loop
		default:
			return n, err
		}
	}
	if wrote && !(prev == '\r' && last == '\n') {
		eol := "\r\n"
		if last == '\r' {
			eol = "\n"
		}
		if _, err := w.WriteString(eol); err != nil {
			return n, err
		}
	}
	_, err = w.WriteString(".\r\n")
	return n, err
}

// isBlankLine reports whether a complete line is empty: the separator
// between header and body (RFC 5322 §2.1). A bare LF is accepted too.
func isBlankLine(line []byte) bool {
	return string(line) == "\r\n" || string(line) == "\n"
}
