package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/testsupport"
)

// emlFiles returns every file under root whose name ends in .eml, as
// `find root -name '*.eml'` lists them (paths relative to root).
func emlFiles(root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".eml") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// TestStoreOnlyDeliveredMessagesNamedEml: `find mailbox -name '*.eml'`
// lists exactly the delivered messages, one file per mailbox, at every
// instant: no staged or tmp file carries the .eml name (the original
// design's promise, "emails stored as .eml files"). Leftovers of earlier
// versions (tmp files named <id>.eml) and of this one (<id>.tmp) are
// removed at start-up. A walker polls the tree while messages to one and
// to two mailboxes are delivered over SMTP; after each 250 the listing is
// exactly the messages acknowledged so far.
func TestStoreOnlyDeliveredMessagesNamedEml(t *testing.T) {
	requireMaildir(t, "checks the message file names on disk")
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), 4)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+"\nbob:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mailbox")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, "alice", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	inst := filepath.Join(dir, ".tmp", "18a2b3c4d5e6f708.9f3e0a11.00000001")
	if err := os.MkdirAll(inst, 0o700); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(dir, "alice", "tmp", "18a2b3c4d5e6f708.9f3e0a11.0000002a.eml"), // earlier versions
		filepath.Join(dir, "alice", "tmp", "18a2b3c4d5e6f708.9f3e0a11.0000002b.tmp"),
		filepath.Join(inst, "18a2b3c4d5e6f708.9f3e0a11.0000002c.eml"),
		filepath.Join(inst, "18a2b3c4d5e6f708.9f3e0a11.0000002d.tmp"),
	}
	for _, f := range leftovers {
		if err := os.WriteFile(f, []byte("Subject: cut off"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, dir, "--users-file", users)
	for _, f := range append(leftovers, inst) {
		if !testsupport.WaitUntil(10*time.Second, func() bool { _, err := os.Stat(f); return os.IsNotExist(err) }) {
			t.Fatalf("leftover %s not removed at start-up", f)
		}
	}

	var want []string // the listing after the last 250
	var mu sync.Mutex
	var bad []string
	stop := make(chan struct{})
	walked := make(chan struct{})
	go func() {
		defer close(walked)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, f := range emlFiles(dir) {
				// <user>/new/<file> or <user>/cur/<file>, nothing else.
				parts := strings.Split(f, string(filepath.Separator))
				if len(parts) != 3 || (parts[1] != "new" && parts[1] != "cur") || strings.HasPrefix(parts[0], ".") {
					mu.Lock()
					if len(bad) < 10 {
						bad = append(bad, f)
					}
					mu.Unlock()
				}
			}
		}
	}()
	for i := range 40 {
		to := []string{"alice@example.com", "bob@example.com"}
		if i%3 == 2 {
			to = to[:1]
		}
		id := sendRaw(t, p.Addr("smtp"), "sender@example.com", to, "Subject: names\r\n\r\nbody\r\n")
		for _, r := range to {
			want = append(want, filepath.Join(strings.TrimSuffix(r, "@example.com"), "new", id+".eml"))
		}
		slices.Sort(want)
		if got := emlFiles(dir); !slices.Equal(got, want) {
			t.Fatalf("after the 250 of message %d, *.eml files:\n%v\nwant exactly the delivered messages, one per mailbox:\n%v", i, got, want)
		}
	}
	close(stop)
	<-walked
	if len(bad) > 0 {
		t.Fatalf("*.eml files outside <user>/new and <user>/cur seen during deliveries: %v", bad)
	}
}
