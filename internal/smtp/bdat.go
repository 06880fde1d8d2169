package smtp

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// errBackendDone is what a BDAT chunk write gets once Backend.Data has
// returned before the last chunk.
var errBackendDone = errors.New("smtp: backend stopped reading")

// dataResult is the outcome of Backend.Data.
type dataResult struct {
	id  string
	err error
}

// bdatWriter feeds the chunks of one BDAT transaction (RFC 3030) to a
// single Backend.Data call through an io.Pipe, so that memory stays bounded
// however large the message.
type bdatWriter struct {
	pw   *io.PipeWriter
	pr   *policyReader // the Policy's view of the end of the message; nil without one
	done chan dataResult
	n    int64   // octets written
	tail [2]byte // last two octets written
	werr error   // first write error: the backend stopped reading

	check *lineCheck // BareNewlineReject (not for BINARYMIME): the chunks' octets
}

func (s *session) startBdat(env *Envelope) *bdatWriter {
	pr, pw := io.Pipe()
	b := &bdatWriter{pw: pw, done: make(chan dataResult, 1)}
	r, policyR := s.messageReader(pr, env)
	b.pr = policyR
	go func() {
		var res dataResult
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in backend", "panic", v, "stack", string(debug.Stack()))
				res = dataResult{err: fmt.Errorf("backend panic: %v", v)}
			}
			pr.CloseWithError(errBackendDone)
			b.done <- res
		}()
		res.id, res.err = s.srv.Backend.Data(s.ctx, env, r)
	}()
	return b
}

// Write passes chunk octets to the backend. After the backend has stopped
// reading it swallows the octets, so that the chunk is still consumed from
// the connection; werr records why.
func (b *bdatWriter) Write(p []byte) (int, error) {
	if b.check != nil && b.check.bad == nil {
		if b.check.scan(p); b.check.bad != nil {
			b.refuse()
		}
	}
	if b.werr == nil {
		if _, err := b.pw.Write(p); err != nil {
			b.werr = err
		}
	}
	b.n += int64(len(p))
	switch {
	case len(p) >= 2:
		copy(b.tail[:], p[len(p)-2:])
	case len(p) == 1:
		b.tail[0], b.tail[1] = b.tail[1], p[0]
	}
	return len(p), nil
}

// refuse fails the message with the reply the bare-newline check found:
// the backend's reader returns it, so nothing is stored, and the octets
// still to come are swallowed.
func (b *bdatWriter) refuse() {
	b.pw.CloseWithError(b.check.bad)
	if b.werr == nil {
		b.werr = b.check.bad
	}
}

// refused is the reply for data the bare-newline check refuses, nil if
// none. At the last chunk (last) a final CR is bare.
func (b *bdatWriter) refused(last bool) *Error {
	if b.check == nil {
		return nil
	}
	if last && b.check.bad == nil {
		if b.check.end(); b.check.bad != nil {
			b.refuse()
		}
	}
	return b.check.bad
}

// finish ends the message and returns the backend's result. The backend
// contract says the data ends in a line end; BDAT data is exact octets, so
// a CRLF is appended when a non-empty message does not end in LF. A final
// bare LF already ends the last line (the store writes it as CRLF):
// appending CRLF after it would add an empty line to the message.
func (b *bdatWriter) finish() dataResult {
	if b.werr == nil && b.n > 0 && b.tail[1] != '\n' {
		if _, err := b.pw.Write([]byte("\r\n")); err != nil {
			b.werr = err
		}
	}
	b.pw.Close()
	return <-b.done
}

// abort fails the message with err (which the backend's reader returns) and
// waits for Backend.Data to return.
func (b *bdatWriter) abort(err error) dataResult {
	b.pw.CloseWithError(err)
	return <-b.done
}

// cmdBdat handles BDAT (RFC 3030 §2).
//
// Choices:
//   - A malformed argument gets 501 and, since the size of the chunk that
//     follows is unknown, 421 and the connection is closed.
//   - A chunk out of sequence (no accepted RCPT) is read and discarded,
//     then answered 503.
//   - A chunk that takes the message over MaxMessageBytes fails the
//     transaction with 552; its octets are read and discarded (a single
//     chunk declaring more than the whole limit instead closes the
//     connection after the 552). The transaction ends; the following BDAT
//     chunks already pipelined (RFC 3030 §2 says the server must accept and
//     discard them) are discarded and answered 503 without counting as
//     errors, until a LAST chunk, RSET, MAIL or HELO/EHLO.
//   - A backend failure before LAST is handled like the size failure with
//     the backend's reply.
func (s *session) cmdBdat(arg string) {
	f := strings.Fields(arg)
	var (
		n    int64
		ok   = len(f) == 1 || len(f) == 2
		last bool
	)
	if ok {
		n, ok = parseSize(f[0])
	}
	if ok && len(f) == 2 {
		last = strings.EqualFold(f[1], "LAST")
		ok = last
	}
	if !ok {
		s.reply(codeParamSyntax, "5.5.4", "Syntax: BDAT size [LAST]")
		s.replyf(codeUnavailable, "4.5.4", "%s Cannot find the end of the chunk, closing connection (conn %s)", s.host, s.info.ID)
		s.closing = true
		return
	}

	max := s.srv.maxMessageBytes()
	switch {
	case s.bdatStale:
		if !s.discardChunk(n, max) {
			return
		}
		s.noCount = true
		s.reply(codeBadSequence, "5.5.1", "Error: transaction failed, send RSET")
		s.noCount = false
		if last {
			s.bdatStale = false
		}
		return
	case s.env == nil || len(s.env.To) == 0:
		if !s.discardChunk(n, max) {
			return
		}
		s.reply(codeBadSequence, "5.5.1", "Error: need RCPT command")
		return
	}

	env := s.env
	var written int64
	if s.bdat != nil {
		written = s.bdat.n
	}
	if n > max-written {
		// RFC 3030 §2 with RFC 1870: 552 once the message would exceed
		// the limit; nothing is stored.
		if s.bdat != nil {
			s.bdat.abort(ErrMessageTooBig)
			s.bdat = nil
		}
		s.endTransaction()
		s.bdatStale = !last
		if !s.discardChunk(n, max) {
			return
		}
		s.log.Info("message refused: too big", "limit", max, "rcpts", len(env.To))
		s.reply(codeExceededStorage, "5.3.4", "Message size exceeds fixed limit")
		return
	}

	if s.bdat == nil {
		if err := s.policy(StageData, "", env); err != nil {
			// Refused at the first chunk: its octets are read and
			// dropped, and the transaction ends; chunks already pipelined
			// after it are discarded as after a size failure.
			if errors.Is(err, ErrDrop) {
				s.drop("data")
				return
			}
			s.endTransaction()
			s.bdatStale = !last
			if !s.discardChunk(n, max) {
				return
			}
			s.backendError("data", err)
			return
		}
		env.Chunked = true
		s.bdat = s.startBdat(env)
		if s.srv.BareNewline == BareNewlineReject && env.Body != "BINARYMIME" {
			s.bdat.check = &lineCheck{}
		}
	}
	b := s.bdat
	s.conn.SetTimeouts(s.srv.dataTimeout(), s.srv.writeTimeout())
	dl := s.startDataDeadline()
	_, err := io.CopyN(b, rateReader{s.conn.R, dl}, n)
	dl.stop()
	s.conn.SetTimeouts(s.srv.commandTimeout(), s.srv.writeTimeout())
	if err != nil {
		// Client gone or timed out inside the chunk: the backend's reader
		// fails, nothing is stored, the connection closes.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.bdat = nil
		b.abort(err)
		s.env = nil
		s.dataReadFailed(dl, "bdat chunk", err)
		s.closing = true
		return
	}
	refused := b.refused(last)
	if b.werr != nil {
		// The backend returned before the last chunk, or the data was
		// refused: the transaction fails as for a size failure.
		res := <-b.done
		s.bdat = nil
		s.env = nil
		s.bdatStale = !last
		switch {
		case refused != nil:
			res.err = refused
		case res.err == nil:
			res.err = fmt.Errorf("backend returned before the last chunk (id %q)", res.id)
		}
		s.finishMessage(env, "", res.err, false, b.n)
		return
	}
	if !last {
		s.replyf(codeOK, "2.0.0", "%d octets received", n)
		return
	}
	res := b.finish()
	s.bdat = nil
	s.env = nil
	if v := b.pr.result(); v != nil {
		if errors.Is(v, ErrDrop) {
			s.drop("message")
			return
		}
		res.err = v // the backend stored nothing: its reader failed with v
	}
	s.finishMessage(env, res.id, res.err, false, b.n)
}

// discardChunk reads and drops n octets of chunk data. A chunk larger than
// max is not read: the session replies 552, then 421, and closes. It
// reports whether the session goes on.
func (s *session) discardChunk(n, max int64) bool {
	if n > max {
		s.reply(codeExceededStorage, "5.3.4", "Message size exceeds fixed limit")
		s.replyf(codeUnavailable, "4.3.4", "%s Chunk too large, closing connection (conn %s)", s.host, s.info.ID)
		s.closing = true
		return false
	}
	s.conn.SetTimeouts(s.srv.dataTimeout(), s.srv.writeTimeout())
	defer s.conn.SetTimeouts(s.srv.commandTimeout(), s.srv.writeTimeout())
	dl := s.startDataDeadline()
	defer dl.stop()
	if _, err := io.CopyN(io.Discard, rateReader{s.conn.R, dl}, n); err != nil {
		s.dataReadFailed(dl, "bdat chunk", err)
		s.closing = true
		return false
	}
	return true
}
