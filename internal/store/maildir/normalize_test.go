package maildir

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// normalizeRef is an obviously correct (and memory-hungry) statement of the
// normal form, to check the streaming code against.
func normalizeRef(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(in) == 0 || in[len(in)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

var normalizeCases = []struct{ name, in, want string }{
	{"empty", "", "\r\n"},
	{"crlf", "a\r\nb\r\n", "a\r\nb\r\n"},
	{"lf", "a\nb\n", "a\r\nb\r\n"},
	{"mixed", "a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n"},
	{"no final newline", "a\nb", "a\r\nb\r\n"},
	{"no final newline crlf", "a\r\nb", "a\r\nb\r\n"},
	{"only lf", "\n", "\r\n"},
	{"blank lines", "\n\n\n", "\r\n\r\n\r\n"},
	{"bare cr kept", "a\rb\n", "a\rb\r\n"},
	{"final bare cr", "a\r", "a\r\r\n"},
	{"cr cr lf", "a\r\r\n", "a\r\r\n"},
	{"lf cr", "\n\r", "\r\n\r\r\n"},
	{"nul and 8bit", "\x00\xff\n", "\x00\xff\r\n"},
}

func TestNormalizeTable(t *testing.T) {
	for _, tc := range normalizeCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(normalizeRef([]byte(tc.in))); got != tc.want {
				t.Fatalf("reference: got %q, want %q", got, tc.want)
			}
			checkNormalize(t, []byte(tc.in))
		})
	}
}

// checkNormalize checks normalizedSize and crlfReader against normalizeRef,
// with whole reads, 1-byte input reads and 1-byte output reads.
func checkNormalize(t *testing.T, in []byte) {
	t.Helper()
	want := normalizeRef(in)
	n, err := normalizedSize(bytes.NewReader(in), nil)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("normalizedSize(%q) = %d, %v; want %d", in, n, err, len(want))
	}
	got, err := io.ReadAll(newCRLFReader(bytes.NewReader(in), 0))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("crlfReader(%q) = %q, %v; want %q", in, got, err, want)
	}
	if len(in) > 100<<10 {
		return // 1-byte reads of large inputs are too slow under -race
	}
	n, err = normalizedSize(iotest.OneByteReader(bytes.NewReader(in)), make([]byte, 3))
	if err != nil || n != int64(len(want)) {
		t.Fatalf("normalizedSize(1-byte reads of %q) = %d, %v; want %d", in, n, err, len(want))
	}
	got, err = io.ReadAll(iotest.OneByteReader(newCRLFReader(iotest.OneByteReader(bytes.NewReader(in)), int64(len(in)))))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("crlfReader 1-byte (%q) = %q, %v; want %q", in, got, err, want)
	}
	if err := iotest.TestReader(newCRLFReader(bytes.NewReader(in), 0), want); err != nil {
		t.Fatalf("iotest.TestReader(%q): %v", in, err)
	}
}

// TestNormalizeAcrossBufferBoundary puts CR and LF on both sides of the
// internal buffer boundary.
func TestNormalizeAcrossBufferBoundary(t *testing.T) {
	for _, tail := range []string{"\r\n", "\n", "\r", "\n\n", "\r\r\n"} {
		for off := -2; off <= 1; off++ {
			in := []byte(strings.Repeat("x", normBufSize+off) + tail + "y\n")
			checkNormalize(t, in)
		}
	}
}

func TestNormalizeOneMegabyteLine(t *testing.T) {
	line := bytes.Repeat([]byte("a"), 1<<20)
	checkNormalize(t, line)                                     // no line end at all
	checkNormalize(t, append(line[:len(line):len(line)], '\n')) // bare LF
}

func TestNormalizeReadError(t *testing.T) {
	boom := errors.New("boom")
	r := newCRLFReader(io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)), 0)
	_, err := io.ReadAll(r)
	if !errors.Is(err, boom) {
		t.Fatalf("crlfReader error = %v, want %v", err, boom)
	}
	if _, err := normalizedSize(iotest.ErrReader(boom), nil); !errors.Is(err, boom) {
		t.Fatalf("normalizedSize error = %v, want %v", err, boom)
	}
}

func TestExactReader(t *testing.T) {
	got, err := io.ReadAll(&exactReader{r: strings.NewReader("abcdef"), left: 4})
	if err != nil || string(got) != "abcd" {
		t.Fatalf("longer source: got %q, %v; want \"abcd\", nil", got, err)
	}
	got, err = io.ReadAll(&exactReader{r: strings.NewReader("ab"), left: 4})
	if !errors.Is(err, errSizeChanged) || !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != "ab" {
		t.Fatalf("shorter source: got %q, %v; want \"ab\" and errSizeChanged", got, err)
	}
	if err := iotest.TestReader(&exactReader{r: strings.NewReader("abcd"), left: 4}, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, tc := range normalizeCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkNormalize(t, in)
	})
}
