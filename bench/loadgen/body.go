package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
)

// makeMessage returns a message of exactly size octets (headers and a body
// of random printable CRLF lines up to 76 characters, about one in eight
// beginning with '.'), and its dot-stuffed form followed by the DATA
// terminator ".\r\n" (RFC 5321 §4.5.2).
func makeMessage(rng *rand.Rand, size int, n int) (raw, stuffed []byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 +/=-_,;"
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <bench@example.com>\r\nTo: <user@example.com>\r\nSubject: bench message %d\r\n"+
		"Message-ID: <%d.%d@bench.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", n, n, rng.Uint64())
	for b.Len() < size {
		left := size - b.Len()
		n := 1 + rng.IntN(76)
		if n+2 > left {
			n = left - 2
		}
		if n <= 0 { // one octet left: cannot fit a line; end with a longer last line
			break
		}
		line := make([]byte, n)
		for i := range line {
			line[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(8) == 0 {
			line[0] = '.'
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	raw = b.Bytes()
	if len(raw) < size { // pad the last line by one octet
		raw = append(raw[:len(raw)-2], 'x', '\r', '\n')
	}
	stuffed = make([]byte, 0, len(raw)+len(raw)/64+8)
	start := true
	for _, c := range raw {
		if start && c == '.' {
			stuffed = append(stuffed, '.')
		}
		stuffed = append(stuffed, c)
		start = c == '\n'
	}
	stuffed = append(stuffed, ".\r\n"...)
	return raw, stuffed
}
