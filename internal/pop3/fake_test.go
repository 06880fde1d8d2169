package pop3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory Backend: users with passwords, one mailbox per
// user, an exclusive lock per mailbox, and a record of every maildrop opened.
type fakeBackend struct {
	mu      sync.Mutex
	pass    map[string]string
	boxes   map[string][][]byte
	locked  map[string]bool
	drops   []*fakeDrop
	logins  int
	failErr error // if set, Login returns it before checking anything

	// Hooks for fault injection.
	commitErr    error
	keepOnCommit bool // Commit records but removes nothing (fuzzing)
	openErr      error
	panicLogin   bool
	panicOpen    bool
	gate         *gate // if set, reading a message waits for it to open
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		pass:   map[string]string{"user": "pass"},
		boxes:  map[string][][]byte{},
		locked: map[string]bool{},
	}
}

// add appends messages to user's mailbox.
func (b *fakeBackend) add(user string, msgs ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		b.boxes[user] = append(b.boxes[user], []byte(m))
	}
}

func (b *fakeBackend) Login(ctx context.Context, c ConnInfo, username, password string) (Maildrop, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logins++
	if b.panicLogin {
		panic("fake backend login panic")
	}
	if b.failErr != nil {
		return nil, b.failErr
	}
	if p, ok := b.pass[username]; !ok || p != password {
		return nil, ErrAuthFailed
	}
	if b.locked[username] {
		return nil, ErrInUse
	}
	b.locked[username] = true
	d := &fakeDrop{b: b, user: username, closed: make(chan struct{})}
	for i, m := range b.boxes[username] {
		d.data = append(d.data, m)
		d.msgs = append(d.msgs, Message{UID: fmt.Sprintf("uid-%s-%d", username, i+1), Size: int64(len(m))})
	}
	b.drops = append(b.drops, d)
	return d, nil
}

// lastDrop returns the most recently opened maildrop.
func (b *fakeBackend) lastDrop(t *testing.T) *fakeDrop {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.drops) == 0 {
		t.Fatal("no maildrop was opened")
	}
	return b.drops[len(b.drops)-1]
}

// set changes the backend under its lock.
func (b *fakeBackend) set(f func(*fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// count returns the number of messages in user's mailbox.
func (b *fakeBackend) count(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.boxes[user])
}

func (b *fakeBackend) loginCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logins
}

func (b *fakeBackend) isLocked(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.locked[user]
}

// fakeDrop is the Maildrop of fakeBackend. It records Commit calls.
type fakeDrop struct {
	b      *fakeBackend
	user   string
	msgs   []Message
	data   [][]byte
	closed chan struct{}

	mu      sync.Mutex
	commits [][]int
	nclose  int
}

func (d *fakeDrop) Messages() []Message { return d.msgs }

func (d *fakeDrop) Open(i int) (io.ReadCloser, error) {
	d.b.mu.Lock()
	err, p, gate := d.b.openErr, d.b.panicOpen, d.b.gate
	d.b.mu.Unlock()
	if p {
		panic("fake maildrop open panic")
	}
	if err != nil {
		return nil, err
	}
	if gate != nil {
		return io.NopCloser(io.MultiReader(gate, bytes.NewReader(d.data[i]))), nil
	}
	return io.NopCloser(bytes.NewReader(d.data[i])), nil
}

// gate is a reader that reports when it is first read, then blocks until
// released and yields nothing.
type gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) Read([]byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return 0, io.EOF
}

func (d *fakeDrop) Commit(indexes []int) error {
	d.mu.Lock()
	d.commits = append(d.commits, append([]int(nil), indexes...))
	d.mu.Unlock()
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.b.commitErr != nil {
		return d.b.commitErr
	}
	if d.b.keepOnCommit {
		return nil
	}
	del := map[int]bool{}
	for _, i := range indexes {
		del[i] = true
	}
	var keep [][]byte
	for i, m := range d.b.boxes[d.user] {
		if !del[i] {
			keep = append(keep, m)
		}
	}
	d.b.boxes[d.user] = keep
	return nil
}

func (d *fakeDrop) Close() error {
	d.mu.Lock()
	d.nclose++
	n := d.nclose
	d.mu.Unlock()
	if n > 1 {
		return errors.New("maildrop closed twice")
	}
	d.b.mu.Lock()
	d.b.locked[d.user] = false
	d.b.mu.Unlock()
	close(d.closed)
	return nil
}

// waitClosed waits until the maildrop has been closed exactly once.
func (d *fakeDrop) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-d.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("maildrop was not closed")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nclose != 1 {
		t.Fatalf("maildrop closed %d times", d.nclose)
	}
}

func (d *fakeDrop) commitCalls() [][]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]int(nil), d.commits...)
}
