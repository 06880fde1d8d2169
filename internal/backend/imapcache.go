package backend

import "sync"

// envelopeCacheSize bounds the cache of parsed messages: about 700 octets
// an entry (ENVELOPE and BODYSTRUCTURE of a simple message), so at most
// some 45 MiB.
const envelopeCacheSize = 1 << 16

// envelopeKey names one message's content for good: a UID is never
// reused within a UIDVALIDITY, and the id makes even a folder deleted and
// created again within a second (same UIDVALIDITY) miss.
type envelopeKey struct {
	mailbox, folder string
	validity, uid   uint32
	id              string
}

// envelopeCache keeps the ENVELOPE and BODYSTRUCTURE of messages already
// parsed or read from the index, shared by
// every session: a message's content never changes, so an entry is never
// stale. When full, arbitrary entries make room (Go's map order).
type envelopeCache struct {
	mu sync.Mutex
	m  map[envelopeKey]*parsed
}

func (c *envelopeCache) get(k envelopeKey) *parsed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *envelopeCache) put(k envelopeKey, e *parsed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[envelopeKey]*parsed)
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
