package pop3

import (
	"bufio"
	"errors"
	"io"
	"sync"

	"postoffice/internal/mailheader"
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
// body (TOP, RFC 1939 §7). The header ends where package mailheader's rule
// says: at the empty line, or at the first line that is neither a header
// field nor a continuation, which is then the first line of the body. When
// the message has no empty line there (the classic "Subject: Test
// Email\r\nHello Bob,\r\n", or a message of header fields only), TOP sends
// one CRLF in its place: RFC 1939 §7 has TOP send "the blank line
// separating the headers from the body" whatever the message holds, and a
// client reading headers with TOP 0 relies on it. An empty message is sent
// empty.
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
		firstLine  = true // the next line is the message's first
		inHeader   = true // TOP: the end of the header is not yet seen
		prev, last byte   // the last two octets written, for the terminator
		wrote      bool
	)
loop:
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if lineStart {
				if bodyLines >= 0 {
					inBody := !inHeader
					if inHeader && mailheader.Ends(chunk, firstLine) {
						inHeader = false
						if !mailheader.IsBlank(chunk) {
							// No empty line: this line starts the body, and
							// RFC 1939 §7's blank line is sent in its place.
							if _, err := w.WriteString("\r\n"); err != nil {
								return n, err
							}
							inBody = true
						}
					}
					if inBody {
						if bodyLines == 0 {
							break loop
						}
						bodyLines--
					}
				}
				firstLine = false
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
	if bodyLines >= 0 && inHeader && wrote {
		// TOP of a message of header fields only: the blank line that
		// ends them (RFC 1939 §7).
		if _, err := w.WriteString("\r\n"); err != nil {
			return n, err
		}
	}
	_, err = w.WriteString(".\r\n")
	return n, err
}
