package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// deliverMany delivers n messages (bodies from body(i), CRLF text without
// the final dot) over workers concurrent SMTP sessions and returns the
// queue ids by message index. Safe to call from the test goroutine only.
func deliverMany(t *testing.T, addr string, n, workers int, body func(i int) string) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer nc.Close()
				c := testsupport.NewConn(t, nc)
				step := func(send, want string) (string, error) {
					if send != "" {
						c.SetWriteDeadline(time.Now().Add(testsupport.Timeout))
						if _, err := c.Write([]byte(send)); err != nil {
							return "", err
						}
					}
					r, err := c.ReadReply()
					if err != nil {
						return "", err
					}
					l := r.Last()
					if !strings.HasPrefix(l, want) {
						return "", fmt.Errorf("after %.40q got %q, want %s", send, l, want)
					}
					return l, nil
				}
				if _, err := step("", "220"); err != nil {
					return err
				}
				if _, err := step("EHLO bulk.test\r\n", "250"); err != nil {
					return err
				}
				for i := w; i < n; i += workers {
					if _, err := step("MAIL FROM:<bulk@test>\r\n", "250"); err != nil {
						return err
					}
					if _, err := step("RCPT TO:<user@test>\r\n", "250"); err != nil {
						return err
					}
					if _, err := step("DATA\r\n", "354"); err != nil {
						return err
					}
					l, err := step(body(i)+".\r\n", "250 2.0.0")
					if err != nil {
						return err
					}
					m := queuedRe.FindStringSubmatch(l)
					if m == nil {
						return fmt.Errorf("no queue id in %q", l)
					}
					ids[i] = m[1]
				}
				_, err = step("QUIT\r\n", "221")
				return err
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("delivering: %v", err)
		}
	}
	return ids
}

// readMailFiles returns the content of every message file of user by file
// name (new/ and cur/).
func readMailFiles(t *testing.T, dir, user string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range mailFiles(t, dir, user) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// countFiles returns the number of entries in dir (0 if it does not exist).
func countFiles(t *testing.T, dir string) int {
	requireMaildir(t, "counts files in a Maildir directory")
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return len(ents)
}

// stagedData returns the names of the files holding data in the staging
// directory root/.tmp, where deliveries write before linking into new/:
// deliveries in progress or cut off (the pool of prepared tmp files there
// is empty; a delivered file whose staging name is not yet removed is
// linked in new/ too).
func stagedData(t *testing.T, root string) []string {
	requireMaildir(t, "reads staged files of a Maildir")
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(root, ".tmp"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Size() > 0 && fi.Sys().(*syscall.Stat_t).Nlink == 1 {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// stagedFiles returns the regular files under root/.tmp (in it and in its
// instance directories) and the directories in it.
func stagedFiles(root string) (files, dirs []string) {
	base := filepath.Join(root, ".tmp")
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
		case d.Type().IsRegular():
			files = append(files, p)
		case d.IsDir() && p != base:
			dirs = append(dirs, p)
		}
		return nil
	})
	return files, dirs
}

// procStatusKB returns a "<key>: <n> kB" field of /proc/<pid>/status (e.g.
// VmRSS, VmHWM) in kB, or -1 when it cannot be read (not Linux).
func procStatusKB(pid int, key string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// startFault starts the binary like start, with the HTTP listener off so
// that fault tests never contend for its fixed default port.
func startFault(t *testing.T, dir string, extra ...string) *proc {
	t.Helper()
	return start(t, dir, append([]string{"--http-addr="}, extra...)...)
}
