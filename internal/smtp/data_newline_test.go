package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"postoffice/internal/testsupport"
)

// readDataPolicy is readData under a bare-newline policy; it also drains
// the reader, as the session does, and returns what is left after that.
func readDataPolicy(in string, p BareNewline, bufSize int, oneByte bool) (string, error, string) {
	var src io.Reader = strings.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(src, bufSize)
	d := newDataReader(br, 1<<30)
	d.setPolicy(p)
	msg, err := readAllData(d)
	if derr := d.drain(); derr != nil && err == nil {
		err = derr
	}
	rest, _ := io.ReadAll(br)
	return msg, err, string(rest)
}

// Accept: only CRLF ends a line, so a bare LF is line text and a dot after
// it is not at a line start; the end is still CRLF "." CRLF only.
func TestDataReaderAcceptKeepsBareLF(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bare LF kept", "a\nb\r\n.\r\n", "a\nb\r\n"},
		{"dots after bare LF kept", "a\n..x\r\n.\r\n", "a\n..x\r\n"},
		{"LF dot CRLF is text", "a\n.\r\n.\r\n", "a\n.\r\n"},
		{"LF dot LF is text, not an end", "a\n.\nMAIL FROM:<e@vil>\r\n.\r\n", "a\n.\nMAIL FROM:<e@vil>\r\n"},
		{"dot LF at line start: the dot removed", "x\r\n.\nb\r\n.\r\n", "x\r\n\nb\r\n"},
		{"bare CR and NUL kept", "a\rb\x00\r\n.\r\n", "a\rb\x00\r\n"},
		{"stuffed dot after CRLF removed", "x\r\n..y\r\n.\r\n", "x\r\n.y\r\n"},
		{"LF first", "\n.\r\n.\r\n", "\n.\r\n"},
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, oneByte := range []bool{false, true} {
				got, err, rest := readDataPolicy(tc.in+"NOOP\r\n", BareNewlineAccept, bufSize, oneByte)
				if err != nil || got != tc.want || rest != "NOOP\r\n" {
					t.Errorf("%s (buf %d, oneByte %v): got %q, %v, rest %q; want %q", tc.name, bufSize, oneByte, got, err, rest, tc.want)
				}
			}
		}
	}
}

// Reject: the first bare LF, bare CR or NUL fails the reader with its
// reply; the data is still consumed up to CRLF "." CRLF.
func TestDataReaderRejectBareNewlineAndNUL(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     *Error
	}{
		{"clean", "a\r\n..b\r\n\r\n.\r\n", nil},
		{"8-bit is fine", "\xc3\xa9\xff\r\n.\r\n", nil},
		{"bare LF", "a\nb\r\n.\r\n", errBareLF},
		{"LF first", "\nb\r\n.\r\n", errBareLF},
		{"LF dot LF", "a\r\nb\n.\nc\r\n.\r\n", errBareLF},
		{"bare CR", "a\rb\r\n.\r\n", errBareCR},
		{"CR CR LF", "a\r\r\n.\r\n", errBareCR},
		{"CRLF dot CR", "a\r\n.\rb\r\n.\r\n", errBareCR},
		{"NUL", "a\x00b\r\n.\r\n", errNUL},
		{"NUL after a long line", strings.Repeat("x", 5000) + "\x00\r\n.\r\n", errNUL},
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, oneByte := range []bool{false, true} {
				_, err, rest := readDataPolicy(tc.in+"NOOP\r\n", BareNewlineReject, bufSize, oneByte)
				if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) || rest != "NOOP\r\n" {
					t.Errorf("%s (buf %d, oneByte %v): err %v, rest %q; want %v", tc.name, bufSize, oneByte, err, rest, tc.want)
				}
			}
		}
	}
}

func newlineSession(t *testing.T, p BareNewline) (*fakeBackend, *testsupport.Conn) {
	t.Helper()
	be := newBackend()
	srv := testServer(t, be)
	srv.BareNewline = p
	c := dialGreeted(t, testsupport.Serve(t, srv, ErrServerClosed))
	c.Cmd("EHLO c", "250 *")
	return be, c
}

// --smtp-bare-newline reject over a socket: each message is refused with
// 550 and nothing is stored; the session goes on (Postfix 3.9
// smtpd_forbid_bare_newline = yes answers "550 5.5.2 Error: bare <LF>
// received").
func TestDataRejectBareNewlineAndNUL(t *testing.T) {
	be, c := newlineSession(t, BareNewlineReject)
	for _, tc := range []struct{ data, reply string }{
		{"Subject: x\n\r\nbody\r\n.\r\n", "550 5.5.2 Error: bare <LF> received"},
		{"Subject: x\r\n\r\nbo\rdy\r\n.\r\n", "550 5.5.2 Error: bare <CR> received"},
		{"Subject: x\r\n\r\nbo\x00dy\r\n.\r\n", "550 5.6.0 Error: NUL received"},
	} {
		c.Cmd("MAIL FROM:<a@b>", "250 *")
		c.Cmd("RCPT TO:<x@y>", "250 *")
		c.Cmd("DATA", "354 *")
		c.Send(tc.data)
		c.ExpectReply(tc.reply)
	}
	if m := be.messages(); len(m) != 0 {
		t.Fatalf("refused message stored: %q", m[0].data)
	}
	// A clean message still goes through.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: ok\r\n\r\nbody\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
}

// Reject for BDAT: a chunk with a bare LF fails the transaction (the
// chunks pipelined after it get 503 until LAST, as for a size failure);
// a bare CR at the very end is bare too; BODY=BINARYMIME is not checked.
func TestBDATRejectBareNewline(t *testing.T) {
	be, c := newlineSession(t, BareNewlineReject)
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 4\r\na\nb\rBDAT 3 LAST\r\nc\r\n")
	c.ExpectReply("550 5.5.2 Error: bare <LF> received")
	c.ExpectReply("503 5.5.1 *")
	// A CR that ends one chunk and an LF that starts the next make CRLF.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 2\r\na\r")
	c.ExpectReply("250 2.0.0 2 octets received")
	c.Send("BDAT 1 LAST\r\n\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	// A CR last is bare.
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 2 LAST\r\na\r")
	c.ExpectReply("550 5.5.2 Error: bare <CR> received")
	// Binary data is octets, not lines (RFC 3030 §3).
	c.Cmd("MAIL FROM:<a@b> BODY=BINARYMIME", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Send("BDAT 4 LAST\r\n\x00\n\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q2")
	m := be.messages()
	if len(m) != 2 || m[0].data != "a\r\n" || m[1].data != "\x00\n\r\n" {
		t.Fatalf("messages %+v", m)
	}
}

// Accept over a socket: the data reaches the backend with its bare LF and
// its dots after it as sent.
func TestDataAcceptBareLF(t *testing.T) {
	be, c := newlineSession(t, BareNewlineAccept)
	c.Cmd("MAIL FROM:<a@b>", "250 *")
	c.Cmd("RCPT TO:<x@y>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: x\r\n\r\na\n..b\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as Q1")
	if m := be.messages(); len(m) != 1 || m[0].data != "Subject: x\r\n\r\na\n..b\r\n" {
		t.Fatalf("messages %+v", m)
	}
}

// acceptModel is the reference for BareNewlineAccept: the data ends as
// dataModel finds; lines are the text between CRLFs only, and a line that
// starts with "." loses that dot (RFC 5321 §4.5.2).
func acceptModel(in []byte) (msg, rest []byte, ok bool) {
	i := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
	if i < 0 {
		return nil, nil, false
	}
	body, rest := in[:i], in[i+3:]
	var out []byte
	for len(body) > 0 {
		j := bytes.Index(body, []byte("\r\n"))
		line := body[:j]
		body = body[j+2:]
		line, _ = bytes.CutPrefix(line, []byte("."))
		out = append(append(out, line...), '\r', '\n')
	}
	return out, rest, true
}

// rejectModel is the reference for BareNewlineReject: the reply for the
// first bare LF, bare CR or NUL of the data up to and including its
// terminator (a bare CR is known at the octet after it, and then wins),
// nil if none.
func rejectModel(in []byte) *Error {
	i := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
	data := in[:i+3]
	for j, b := range data {
		switch {
		case j > 0 && data[j-1] == '\r' && b != '\n':
			return errBareCR
		case b == '\n' && (j == 0 || data[j-1] != '\r'):
			return errBareLF
		case b == 0:
			return errNUL
		}
	}
	return nil
}

// FuzzDataReaderPolicies checks the accept and reject policies against
// their models on arbitrary input, split and read arbitrarily: the same
// message (accept) or the same verdict (reject, the message otherwise as
// normalize stores it), and the same input left after the terminator.
func FuzzDataReaderPolicies(f *testing.F) {
	for _, s := range []string{
		"", ".\r\n", "a\r\n.\r\n", "a\n..x\r\n.\r\n", "a\n.\nb\r\n.\r\n", "x\r\n.\nb\r\n.\r\n",
		"a\rb\r\n.\r\n", "a\r\x00\r\n.\r\n", "\x00\r\n.\r\nNOOP\r\n", "a\r\r\n.\r\n", "\n.\r\n.\r\n",
	} {
		f.Add([]byte(s), []byte{0}, []byte{0})
		f.Add([]byte(s), []byte{6, 0, 63}, []byte{1, 2, 255})
	}
	f.Fuzz(func(t *testing.T, in, chunks, reads []byte) {
		wantMsg, wantRest, terminated := acceptModel(in)
		out, err, rest := runDataPolicy(t, in, chunks, reads, 1<<20, BareNewlineAccept)
		if !terminated {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("accept, unterminated input: err %v", err)
			}
			return
		}
		if err != nil || !bytes.Equal(out, wantMsg) || !bytes.Equal(rest, wantRest) {
			t.Fatalf("accept differs from the model\n in   %q\n got  %q, %v, rest %q\n want %q, rest %q", in, out, err, rest, wantMsg, wantRest)
		}
		normMsg, _, _ := dataModel(in)
		want := rejectModel(in)
		out, err, rest = runDataPolicy(t, in, chunks, reads, 1<<20, BareNewlineReject)
		if !bytes.Equal(rest, wantRest) {
			t.Fatalf("reject: input after the terminator differs\n in   %q\n got  %q\n want %q", in, rest, wantRest)
		}
		if want != nil {
			if err != want {
				t.Fatalf("reject %q: err %v, want %v", in, err, want)
			}
			return
		}
		if err != nil || !bytes.Equal(out, normMsg) {
			t.Fatalf("reject, clean input %q: got %q, %v; want %q", in, out, err, normMsg)
		}
	})
}
