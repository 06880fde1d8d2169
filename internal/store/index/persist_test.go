package index_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

// snapshotOf is everything an index answers about a mailbox: the listing
// POP3 opens from, the web list with its summaries, and the ids found by
// a set of searches.
type snapshotOf struct {
	Listing  []index.Listed
	List     []store.Summary
	Searches map[string][]string
	Info     store.MailboxInfo
	// Precomputed is what Precomputed gives of every listed message.
	Precomputed map[string][]byte
}

// precomputeCopy stands for a protocol's precomputed data: the message
// itself, so that data kept for the wrong message shows.
func precomputeCopy(raw []byte) []byte { return slices.Clone(raw) }

var probeWords = []string{"alpha", "bravo", "bravo is:unread", "from:sender1 echo", "charl", "delta", "echo", "zulu", "from:sender3", "subject:note", "text:body", "is:read", "is:unread"}

func takeSnapshot(t *testing.T, x *index.Index, mb string) snapshotOf {
	t.Helper()
	if err := x.Flush(mb); err != nil {
		t.Fatal(err)
	}
	var s snapshotOf
	var err error
	if s.Listing, err = x.Listing(mb); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(s.Listing, func(a, b index.Listed) int { return strings.Compare(a.Loc, b.Loc) })
	var ids []string
	for _, l := range s.Listing {
		ids = append(ids, l.ID)
	}
	if s.Precomputed, err = x.Precomputed(mb, "", ids); err != nil {
		t.Fatal(err)
	}
	if len(s.Precomputed) != len(ids) {
		t.Fatalf("precomputed data of %d messages, %d indexed", len(s.Precomputed), len(ids))
	}
	res, err := x.List(mb, store.Query{}, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	s.List = res.Messages
	for i := range s.List {
		s.List[i].Received = s.List[i].Received.UTC()
		s.List[i].Date = s.List[i].Date.UTC()
	}
	// Newest first; messages that arrived at the same time (foreign files
	// written within one timestamp tick) come in no defined order.
	sortTies := func(l []store.Summary) {
		slices.SortStableFunc(l, func(a, b store.Summary) int {
			if c := b.Received.Compare(a.Received); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	for i := 1; i < len(s.List); i++ {
		if s.List[i].Received.After(s.List[i-1].Received) {
			t.Fatalf("list not newest first at %d: %v after %v", i, s.List[i].Received, s.List[i-1].Received)
		}
	}
	sortTies(s.List)
	s.Searches = map[string][]string{}
	for _, w := range probeWords {
		q, err := store.ParseQuery(w)
		if err != nil {
			t.Fatal(err)
		}
		res, err := x.List(mb, q, 0, 1<<20)
		if err != nil {
			t.Fatal(w, err)
		}
		sortTies(res.Messages)
		var ids []string
		for _, m := range res.Messages {
			ids = append(ids, m.ID)
		}
		s.Searches[w] = ids
	}
	if s.Info, err = x.Mailbox(mb); err != nil {
		t.Fatal(err)
	}
	return s
}

// An index kept up incrementally over random deliveries, deletions, flag
// changes and changes behind its back (files added, removed and renamed by
// another program) answers exactly what an index rebuilt from scratch
// over the same Maildir answers.
func TestIncrementalEqualsRebuilt(t *testing.T) {
	words := []string{"alpha", "bravo", "charlie", "delta", "echo"}
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			root := t.TempDir()
			m, err := maildir.New(root, maildir.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			x := index.New(m, index.Options{Precompute: precomputeCopy})
			dir := filepath.Join(root, "u")
			var ids []string
			for step := range 120 {
				switch op := rng.IntN(10); {
				case op < 4 || len(ids) == 0:
					body := fmt.Sprintf("From: Sender%d <s%d@example.org>\r\nTo: u@example.com\r\nSubject: note %s %d\r\n\r\nbody %s %s\r\n",
						step%5, step, words[rng.IntN(len(words))], step, words[rng.IntN(len(words))], words[rng.IntN(len(words))])
					ids = append(ids, deliverTest(t, m, "u", body))
				case op == 4:
					i := rng.IntN(len(ids))
					if _, err := x.Delete("u", []string{ids[i]}); err != nil {
						t.Fatal(err)
					}
					ids = slices.Delete(ids, i, i+1)
				case op == 5:
					if _, err := x.SetSeen("u", ids[rng.IntN(len(ids))], rng.IntN(2) == 0); err != nil && !strings.Contains(err.Error(), "not found") {
						t.Fatal(err)
					}
				case op == 6:
					// Another program marks a message read by renaming it.
					i := rng.IntN(len(ids))
					os.Rename(filepath.Join(dir, "new", ids[i]+".eml"), filepath.Join(dir, "cur", ids[i]+".eml:2,S"))
				case op == 7:
					// Another program removes one.
					i := rng.IntN(len(ids))
					os.Remove(filepath.Join(dir, "new", ids[i]+".eml"))
					if m, _ := filepath.Glob(filepath.Join(dir, "cur", ids[i]+".eml:2,*")); len(m) > 0 {
						os.Remove(m[0])
					}
					ids = slices.Delete(ids, i, i+1)
				case op == 8:
					// Another program drops a foreign file in (LF line ends).
					name := fmt.Sprintf("foreign.%d.host", step)
					msg := fmt.Sprintf("Subject: dropped %s\nFrom: zulu@example.net\n\nzulu %s\n", words[rng.IntN(len(words))], words[rng.IntN(len(words))])
					if err := os.WriteFile(filepath.Join(dir, "new", name), []byte(msg), 0o600); err != nil {
						t.Fatal(err)
					}
				default:
					if _, err := x.List("u", store.Query{}, 0, 20); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Let the directory times settle past the racy window, so
			// that the incremental index trusts its stamp.
			incremental := takeSnapshot(t, x, "u")
			x.Close()
			if err := os.RemoveAll(filepath.Join(root, maildir.IndexDirName)); err != nil {
				t.Fatal(err)
			}
			y := index.New(m, index.Options{Precompute: precomputeCopy})
			defer y.Close()
			rebuilt := takeSnapshot(t, y, "u")
			if !reflect.DeepEqual(incremental.Precomputed, rebuilt.Precomputed) {
				t.Fatalf("precomputed data: incremental and rebuilt differ")
			}
			for _, l := range rebuilt.Listing {
				if int64(len(rebuilt.Precomputed[l.ID])) != l.Size && !strings.HasPrefix(l.ID, "foreign.") {
					t.Fatalf("precomputed data of %s: %d octets, message is %d", l.ID, len(rebuilt.Precomputed[l.ID]), l.Size)
				}
			}
			if !reflect.DeepEqual(incremental.Listing, rebuilt.Listing) {
				t.Fatalf("listing: incremental\n%+v\nrebuilt\n%+v", incremental.Listing, rebuilt.Listing)
			}
			for i := range max(len(incremental.List), len(rebuilt.List)) {
				if i >= len(incremental.List) || i >= len(rebuilt.List) || !reflect.DeepEqual(incremental.List[i], rebuilt.List[i]) {
					t.Fatalf("list entry %d: incremental\n%+v\nrebuilt\n%+v", i, incremental.List[i:], rebuilt.List[i:])
				}
			}
			for _, w := range probeWords {
				if !reflect.DeepEqual(incremental.Searches[w], rebuilt.Searches[w]) {
					t.Fatalf("search %q: incremental %v, rebuilt %v", w, incremental.Searches[w], rebuilt.Searches[w])
				}
			}
			if incremental.Info != rebuilt.Info {
				t.Fatalf("counts: incremental %+v, rebuilt %+v", incremental.Info, rebuilt.Info)
			}
			if rebuilt.Info.Messages != len(rebuilt.Listing) || len(rebuilt.List) != len(rebuilt.Listing) {
				t.Fatalf("counts disagree: %+v", rebuilt.Info)
			}
		})
	}
}

// A damaged index file (garbage, cut in half, another version) is moved
// aside and rebuilt: every message is listed and searchable again, and
// the log says so.
func TestDamagedIndexRebuilt(t *testing.T) {
	damage := map[string]func(path string) error{
		"garbage": func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("not an index ", 1000)), 0o600) },
		"truncated": func(p string) error {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()/2)
		},
		"empty":   func(p string) error { return os.Truncate(p, 0) },
		"deleted": func(p string) error { return os.Remove(p) },
	}
	for name, hurt := range damage {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			m, err := maildir.New(root, maildir.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			x := index.New(m, index.Options{})
			var want []string
			for i := range 300 {
				want = append(want, deliverTest(t, m, "u", fmt.Sprintf("Subject: message %d\r\n\r\n%s word%d\r\n", i, strings.Repeat("filler text ", 40), i)))
			}
			if err := x.Flush("u"); err != nil {
				t.Fatal(err)
			}
			x.Close()
			path, err := m.IndexFile("u")
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(path + "-wal")
			os.Remove(path + "-shm")
			if err := hurt(path); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			y := index.New(m, index.Options{Logger: newLogger(&logs)})
			defer y.Close()
			res, err := y.List("u", store.Query{}, 0, 1000)
			if err != nil || res.Total != len(want) {
				t.Fatalf("after %s index: %d messages, %v", name, res.Total, err)
			}
			q, _ := store.ParseQuery("word299")
			if res, err := y.List("u", q, 0, 10); err != nil || res.Total != 1 || res.Messages[0].ID != want[299] {
				t.Fatalf("search after %s index: %+v %v", name, res, err)
			}
			md, err := m.OpenMaildrop("u")
			if err != nil {
				t.Fatal(err)
			}
			if len(md.Messages()) != len(want) {
				t.Fatalf("POP3: %d messages", len(md.Messages()))
			}
			md.Close()
			// An empty file is an empty database: a new index, nothing to
			// move aside.
			if name != "deleted" && name != "empty" && !strings.Contains(logs.String(), "moved aside") {
				t.Fatalf("no log of the rebuild:\n%s", logs.String())
			}
		})
	}
}

// POP3 opens its maildrop from the index: the same ids, sizes and order
// as a listing of the directories, for our files and foreign ones (LF
// line ends, Dovecot names), also after changes behind the index's back.
func TestPOP3FromIndexEqualsScan(t *testing.T) {
	root := t.TempDir()
	plain, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	indexed, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer indexed.Close()
	x := index.New(indexed, index.Options{})
	defer x.Close()
	indexed.UseIndex(x)
	for i := range 50 {
		deliverTest(t, plain, "u", fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))
	}
	dir := filepath.Join(root, "u")
	compare := func(when string) {
		t.Helper()
		a, err := plain.OpenMaildrop("u")
		if err != nil {
			t.Fatal(err)
		}
		want := a.Messages()
		a.Close()
		b, err := indexed.OpenMaildrop("u")
		if err != nil {
			t.Fatal(err)
		}
		got := b.Messages()
		b.Close()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: POP3 from the index\n%+v\nfrom the directories\n%+v", when, got, want)
		}
	}
	compare("fresh")
	compare("warm")
	os.WriteFile(filepath.Join(dir, "new", "1700000000.M1P1.host,S=99"), []byte("Subject: lf\n\nline\nline\n"), 0o600)
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	os.Rename(filepath.Join(dir, "new", files[3].Name()), filepath.Join(dir, "cur", files[3].Name()+":2,S"))
	os.Remove(filepath.Join(dir, "new", files[7].Name()))
	compare("after changes behind its back")
	time.Sleep(10 * time.Millisecond)
	compare("again")
}

func newLogger(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
