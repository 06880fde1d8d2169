package netpolicy

import "crypto/rand"

// NewID returns a short random identifier for a connection, used on every
// log line of a session and echoed in error replies.
func NewID() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford base32
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%32]
	}
	return string(b[:])
}
