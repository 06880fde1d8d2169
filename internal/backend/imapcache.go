package backend

import (
	"sync"

	"github.com/emersion/go-imap/v2"
)

// envelopeCacheSize bounds the envelope cache: about 400 octets an entry,
// so at most some 50 MiB.
const envelopeCacheSize = 1 << 17

// envelopeKey names one message's content for good: a UID is never
// reused within a UIDVALIDITY, and the id makes even a folder deleted and
// created again within a second (same UIDVALIDITY) miss.
type envelopeKey struct {
	mailbox, folder string
	validity, uid   uint32
	id              string
}

// envelopeCache keeps the ENVELOPE of messages already parsed, shared by
// every session: a message's content never changes, so an entry is never
// stale. When full, arbitrary entries make room (Go's map order).
type envelopeCache struct {
	mu sync.Mutex
	m  map[envelopeKey]*imap.Envelope
}

func (c *envelopeCache) get(k envelopeKey) *imap.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *envelopeCache) put(k envelopeKey, e *imap.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[envelopeKey]*imap.Envelope)
	}
	if len(c.m) >= envelopeCacheSize {
		n := envelopeCacheSize / 16
		for k := range c.m {
			delete(c.m, k)
			if n--; n == 0 {
				break
			}
		}
	}
	c.m[k] = e
}
