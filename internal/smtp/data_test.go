package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readData runs the DATA reader on in and returns the message, the error
// and the input left after the terminator.
func readData(in string, max int64, bufSize int, oneByte bool) (string, error, string) {
	var src io.Reader = strings.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(src, bufSize)
	d := newDataReader(br, max)
	msg, err := readAllData(d)
	rest, _ := io.ReadAll(br)
	return msg, err, string(rest)
}

// readAllData reads d to its end in small reads (they exercise the pending
// buffer) and returns the message and the error, nil at the terminator.
func readAllData(d *dataReader) (string, error) {
	var out bytes.Buffer
	buf := make([]byte, 7)
	var err error
	for {
		var n int
		n, err = d.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	return out.String(), err
}

func TestDataReader(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, rest string
	}{
		{"empty message", ".\r\n", "", ""},
		{"simple", "a\r\nb\r\n.\r\nQUIT\r\n", "a\r\nb\r\n", "QUIT\r\n"},
		{"dot stuffed", "..a line that starts with a dot\r\n.\r\n", ".a line that starts with a dot\r\n", ""},
		{"dot stuffed first line then more", "x\r\n..\r\n...\r\n.\r\n", "x\r\n.\r\n..\r\n", ""},
		{"unstuffed leading dot removed", "x\r\n.foo\r\n.\r\n", "x\r\nfoo\r\n", ""},
		{"bare LF normalized", "a\nb\r\n.\r\n", "a\r\nb\r\n", ""},
		{"bare CR kept", "a\rb\r\n.\r\n", "a\rb\r\n", ""},
		{"CR CR LF", "a\r\r\n.\r\n", "a\r\r\n", ""},
		{"NUL and 8-bit", "a\x00\xff\xc3\xa9\r\n.\r\n", "a\x00\xff\xc3\xa9\r\n", ""},
		{"empty lines", "\r\n\r\n\r\n.\r\n", "\r\n\r\n\r\n", ""},
		{"LF dot LF not end", "a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", ""},
		{"CRLF dot LF not end", "a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", ""},
		{"LF dot CRLF not end", "a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", ""},
		{"CR dot CR not end", "a\r.\rb\r\n.\r\n", "a\r.\rb\r\n", ""},
		{"CRLF dot CR not end", "a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", ""},
		{"CRLF dot CR CR", "a\r\n.\r\rb\r\n.\r\n", "a\r\n\r\rb\r\n", ""},
		{"LF dot CR other", "a\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", ""},
		{"start dot LF not end", ".\nb\r\n.\r\n", ".\r\nb\r\n", ""},
		{"LF dot CRLF then real end", "a\n.\r\n.\r\n", "a\r\n.\r\n", ""},
		{"data without final CRLF before dot", "abc.\r\n.\r\n", "abc.\r\n", ""},
		{"line of only CRLF at start then dot", "\r\n.\r\n", "\r\n", ""},
		{"long line", strings.Repeat("x", 100000) + "\r\n.\r\n", strings.Repeat("x", 100000) + "\r\n", ""},
		{"pipelined after end", "a\r\n.\r\nMAIL FROM:<a@b>\r\n", "a\r\n", "MAIL FROM:<a@b>\r\n"},
	} {
		for _, bufSize := range []int{16, 4096} {
			for _, oneByte := range []bool{false, true} {
				got, err, rest := readData(tc.in, 1<<30, bufSize, oneByte)
				if err != nil || got != tc.want || rest != tc.rest {
					t.Errorf("%s (buf %d, oneByte %v): got %q, %v, rest %q; want %q, rest %q",
						tc.name, bufSize, oneByte, got, err, rest, tc.want, tc.rest)
				}
			}
		}
	}
}

func TestDataReaderUnexpectedEOF(t *testing.T) {
	for _, in := range []string{"", "abc", "abc\r\n", "abc\r\n.", "abc\r\n.\r", "abc\n.\n", "a\nb\n.\r\n"} {
		_, err, _ := readData(in, 1<<20, 4096, false)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: err %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
}

func TestDataReaderTooBig(t *testing.T) {
	body := strings.Repeat("0123456789\r\n", 100) // 1200 octets
	in := body + ".\r\nNOOP\r\n"
	// Exactly at the limit passes.
	got, err, _ := readData(in, 1200, 64, false)
	if err != nil || got != body {
		t.Fatalf("at limit: %v, %d octets", err, len(got))
	}
	// One octet over fails, and drain consumes up to the terminator.
	br := bufio.NewReaderSize(strings.NewReader(in), 64)
	d := newDataReader(br, 1199)
	_, err = io.ReadAll(d)
	if !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("over limit: err %v", err)
	}
	if err := d.drain(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "NOOP\r\n" {
		t.Fatalf("rest after drain %q", rest)
	}
}

func BenchmarkDataReader(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"2KB", 2 << 10}, {"1MB", 1 << 20}} {
		line := strings.Repeat("abcdefghij", 7) + "\r\n" // 72 octets
		var body strings.Builder
		for body.Len() < size.n {
			body.WriteString(line)
		}
		body.WriteString(".\r\n")
		in := body.String()
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			r := strings.NewReader(in)
			br := bufio.NewReaderSize(r, 32<<10)
			for b.Loop() {
				r.Reset(in)
				br.Reset(r)
				d := newDataReader(br, 1<<30)
				if _, err := io.Copy(io.Discard, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
