package maildir

import (
	"fmt"
	"postoffice/internal/store"
	"sync"
	"syscall"
	"time"
)

// The free-space floor (Options.MinFreeSpace).
//
// Below the floor the server refuses new mail at MAIL (452 4.3.1), as
// Postfix's smtpd refuses it when the queue file system has less than
// queue_minfree free, and keeps serving and deleting what is stored: the
// room left is for POP3 and web sessions to finish, the index and the
// logs, not for one more message that fills the disk mid-delivery.

// AutoMinFreeSpace as Options.MinFreeSpace sets the floor to
// defaultMinFreeSpace or 1 % of the filesystem, whichever is smaller.
const AutoMinFreeSpace = -1

// defaultMinFreeSpace is the largest automatic floor.
const defaultMinFreeSpace = 100 << 20

// spaceCacheFor is how long a FreeSpace answer is reused: one statfs per
// second at most, however many sessions send MAIL.
const spaceCacheFor = time.Second

// spaceCheck caches the answer of FreeSpace.
type spaceCheck struct {
	floor int64 // Options.MinFreeSpace

	mu  sync.Mutex
	at  time.Time // when err was computed (zero: never)
	err error
}

// FreeSpace implements store.Lifecycle: nil when the filesystem of the
// root has at least the floor free for unprivileged use (statfs f_bavail)
// or the floor is 0, else an error wrapping store.ErrNoSpace that says how
// much is free and what the floor is. The answer is computed at most once
// per second, so crossing the floor in either direction takes effect
// within a second, without a restart. A statfs that fails gives nil:
// Probe and the delivery itself report a missing or broken root.
func (m *Maildir) FreeSpace() error {
	c := &m.space
	if c.floor == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < spaceCacheFor {
		return c.err
	}
	c.err = nil
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.root, &st); err == nil {
		free := int64(st.Bavail) * int64(st.Bsize)
		floor := c.floor
		if floor < 0 {
			floor = min(defaultMinFreeSpace, int64(st.Blocks)*int64(st.Bsize)/100)
		}
		if free < floor {
			c.err = fmt.Errorf("%w: %s free in %s, below the floor of %s", store.ErrNoSpace, mib(free), m.root, mib(floor))
		}
	}
	c.at = time.Now()
	return c.err
}

// mib formats n octets in MiB with one decimal.
func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
