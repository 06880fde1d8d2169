package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// dataModel is the reference for the DATA reader, written from its policy
// (see dataReader) as a whole-input transformation rather than a state
// machine. It returns the message, the input after the terminator, and
// whether a terminator was found.
//
//   - The data ends at the first CRLF "." CRLF, the CRLF before the dot
//     belonging to the message; ".\r\n" at the very start is an empty
//     message. Scanning "\r\n"+in for "\r\n.\r\n" finds both.
//   - Each line (text up to a LF) is stored with a CRLF end: a line that
//     already ends in CR gets only its LF, a bare-LF line gets CRLF.
//   - A line starting with "." loses that dot (RFC 5321 §4.5.2), except a
//     line that is only "." (with or without CR): it is stored as ".".
func dataModel(in []byte) (msg, rest []byte, ok bool) {
	i := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
	if i < 0 {
		return nil, nil, false
	}
	body, rest := in[:i], in[i+3:]
	var out []byte
	for len(body) > 0 {
		j := bytes.IndexByte(body, '\n')
		line := body[:j] // body ends in CRLF, so every line has its LF
		body = body[j+1:]
		switch {
		case bytes.Equal(line, []byte(".")) || bytes.Equal(line, []byte(".\r")):
			line = []byte(".")
		case len(line) > 0 && line[0] == '.':
			line = line[1:]
		}
		out = append(out, line...)
		if len(line) > 0 && line[len(line)-1] == '\r' {
			out = append(out, '\n')
		} else {
			out = append(out, '\r', '\n')
		}
	}
	return out, rest, true
}

// chunkReader returns the bytes of r in chunks whose sizes cycle through
// sizes (each 1-64), so the DATA reader sees every kind of split input,
// down to one byte per read.
type chunkReader struct {
	r     io.Reader
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%64 + 1
		c.i++
	}
	return c.r.Read(p[:min(n, len(p))])
}

// runData reads in through a dataReader limited to max, with the
// connection delivering chunks of the sizes in chunks and the backend
// reading into buffers of the sizes in reads. It returns the output, the
// final error (nil at the terminator) and the unread input.
func runData(t *testing.T, in, chunks, reads []byte, max int64) ([]byte, error, []byte) {
	return runDataPolicy(t, in, chunks, reads, max, BareNewlineNormalize)
}

// runDataPolicy is runData under bare-newline policy p; a refusal, like a
// size failure, is followed by a drain.
func runDataPolicy(t *testing.T, in, chunks, reads []byte, max int64, p BareNewline) ([]byte, error, []byte) {
	br := bufio.NewReaderSize(&chunkReader{r: bytes.NewReader(in), sizes: chunks}, 16)
	d := newDataReader(br, max)
	d.setPolicy(p)
	var out []byte
	var err error
	buf := make([]byte, 300)
	for k := 0; ; k++ {
		size := 1
		if len(reads) > 0 {
			size = int(reads[k%len(reads)])%300 + 1
		}
		var n int
		n, err = d.Read(buf[:size])
		if n < 0 || n > size {
			t.Fatalf("Read returned n=%d for a %d-byte buffer", n, size)
		}
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
		if k > 4*len(in)+100 {
			t.Fatal("Read makes no progress")
		}
	}
	if errors.Is(err, ErrMessageTooBig) || d.refused() != nil {
		if derr := d.drain(); derr != nil {
			err = derr
		}
	} else if err == io.EOF {
		err = nil
	}
	rest, _ := io.ReadAll(br)
	return out, err, rest
}

// FuzzDataReader runs the DATA filter alone on arbitrary bytes, split into
// arbitrary chunks (down to one byte) and read through arbitrary buffer
// sizes, and checks it against dataModel: the same message, the same input
// left for the next command (nothing after the terminator is consumed, no
// message is cut short at anything but the terminator), only CRLF line
// ends, and the size limit enforced exactly.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"", ".\r\n", "a\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x>\r\n", "..x\r\n.\r\n", ".x\n.\n.\r\n",
		"a\n.\nb\r\n.\r\n", "a\n.\r\nb\r\n.\r\n", "a\r\n.\nb\r\n.\r\n", "a\rb\r\r\n.\r\n",
		"a\r.\r\n.\r\n", "\x00\xff\r\n.\r\n", ".\r\r\n.\r\n", "\n.\r\n.\r\n", "x\r\n.\ry\r\n.\r\n",
		"no terminator", "a\r\n.", "a\r\n.\r", "\r\n\r\n.\r\n.\r\n",
	} {
		f.Add([]byte(s), []byte{0}, []byte{0})
		f.Add([]byte(s), []byte{6, 0, 63}, []byte{1, 2, 255})
	}
	f.Fuzz(func(t *testing.T, in, chunks, reads []byte) {
		wantMsg, wantRest, terminated := dataModel(in)
		out, err, rest := runData(t, in, chunks, reads, 1<<20)
		if !terminated {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unterminated input: err %v, want ErrUnexpectedEOF", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("terminated input: err %v", err)
		}
		if !bytes.Equal(out, wantMsg) {
			t.Fatalf("message differs from the model\n in   %q\n got  %q\n want %q", in, out, wantMsg)
		}
		if !bytes.Equal(rest, wantRest) {
			t.Fatalf("input after the terminator differs\n in   %q\n got  %q\n want %q", in, rest, wantRest)
		}
		for i, c := range out {
			if c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF at %d in output %q", i, out)
			}
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		// The size limit: exactly len(out) passes, one less fails, and the
		// failure still consumes exactly up to the terminator.
		if len(out) == 0 {
			return
		}
		if o, err, r := runData(t, in, chunks, reads, int64(len(out))); err != nil || !bytes.Equal(o, out) || !bytes.Equal(r, wantRest) {
			t.Fatalf("at max=len: %q, %v, rest %q", o, err, r)
		}
		if o, err, r := runData(t, in, chunks, reads, int64(len(out)-1)); !errors.Is(err, ErrMessageTooBig) || !bytes.Equal(r, wantRest) || len(o) > len(out) {
			t.Fatalf("at max=len-1: %d octets, %v, rest %q", len(o), err, r)
		}
	})
}
