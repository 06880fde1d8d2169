package store

import (
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// Message ids: 16 hex digits of a per-process strictly increasing
// UnixNano clock, '.', 8 hex digits drawn at random once per process, '.', 8
// hex digits of a per-process counter, e.g.
// "18a2b3c4d5e6f708.9f3e0a11.0000002a" (34 characters). Ids of one process
// are strictly increasing; ids of two processes differ in the random part
// (and almost always in the time); a restarted process starts later in time.
// A store never reuses one (the Maildir creates files with O_EXCL and links
// them with link(2), which never replaces an existing name).
const IDLen = 16 + 1 + 8 + 1 + 8

var idGen struct {
	lastNano atomic.Int64
	counter  atomic.Uint32
	random   [4]byte
}

func init() {
	// crypto/rand.Read never fails on Linux (Go 1.24+ crashes instead).
	_, _ = rand.Read(idGen.random[:])
}

// NewID returns a fresh message id (see IDLen): unique, never reused,
// sortable by time of assignment, characters [0-9a-f.] only.
func NewID() string {
	var now int64
	for {
		last := idGen.lastNano.Load()
		now = time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if idGen.lastNano.CompareAndSwap(last, now) {
			break
		}
	}
	c := idGen.counter.Add(1)
	var b [IDLen]byte
	putHex(b[0:16], uint64(now))
	b[16] = '.'
	hex.Encode(b[17:25], idGen.random[:])
	b[25] = '.'
	putHex(b[26:34], uint64(c))
	return string(b[:])
}

// putHex writes v as len(dst) lowercase hex digits, most significant first.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// isHex reports whether s is all lowercase hex digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// IsNewID reports whether id has the form NewID produces.
func IsNewID(id string) bool {
	return len(id) == IDLen && id[16] == '.' && id[25] == '.' &&
		isHex(id[0:16]) && isHex(id[17:25]) && isHex(id[26:34])
}

// IDTime returns the UnixNano time encoded in an id for which IsNewID is
// true: when it was assigned.
func IDTime(id string) int64 {
	var v uint64
	for i := 0; i < 16; i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		default:
			v = v<<4 | uint64(c-'a'+10)
		}
	}
	return int64(v)
}
