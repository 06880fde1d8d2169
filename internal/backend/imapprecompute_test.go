package backend

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/imap"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport"
)

// precomputeCorpus is mail of every shape FETCH ENVELOPE and BODYSTRUCTURE
// describe: encoded words, groups, octets that are not UTF-8, nested
// multiparts, an attached message, dispositions with parameters, a
// message without a header.
var precomputeCorpus = []string{
	"From: a@example.com\r\nTo: user@example.com\r\nSubject: plain\r\nDate: Mon, 07 Dec 2026 10:00:00 +0100\r\nMessage-ID: <p1@test>\r\n\r\nhello\r\nworld\r\n",
	"From: =?UTF-8?B?w4lsaXNl?= <elise@example.fr>\r\nSender: s@example.com\r\nReply-To: r@example.com, \"Q, R\" <q@example.com>\r\n" +
		"To: undisclosed-recipients:;\r\nCc: team: x@example.com, y@example.com;\r\nBcc: b@example.com\r\n" +
		"Subject: =?ISO-8859-1?Q?caf=E9?= and more\r\nIn-Reply-To: <a@x> <b@y>\r\nDate: 7 Dec 2026 10:00 -0830\r\n\r\nbody\r\n",
	"From: raw\xe9@example.com\r\nSubject: 8-bit \xff\xfe subject\r\nDate: garbage date\r\n\r\nbody \xe9\r\n",
	"MIME-Version: 1.0\r\nFrom: a@example.com\r\nSubject: alternative\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n" +
		"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Language: fr, en\r\nContent-Location: http://example.com/x\r\n\r\n<p>café</p>\r\n--b1--\r\n",
	"MIME-Version: 1.0\r\nFrom: a@example.com\r\nSubject: mixed\r\nContent-Type: multipart/mixed; boundary=\"m\"; x-extra=1\r\n\r\n" +
		"--m\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=cid:i>\r\n" +
		"--r\r\nContent-Type: image/png\r\nContent-ID: <i>\r\nContent-Description: a dot\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n" +
		"--m\r\nContent-Type: application/pdf; name=\"r\xe9sum\xe9.pdf\"\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; size=8\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n" +
		"--m\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n" +
		"--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--i--\r\n" +
		"--m--\r\n",
	"\r\nno header at all\r\n",
	"Content-Type: multipart/mixed; boundary=\"never\"\r\nSubject: broken multipart\r\n\r\nno boundary ever\r\n",
}

// fetchItems is what the comparison fetches: every item precomputed.
const fetchItems = "(ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE)"

// twinIMAP serves one Maildir twice: with the index's precomputed FETCH
// data, and without (every message parsed from its file).
func twinIMAP(t *testing.T) (md *maildir.Maildir, x *index.Index, indexed, plain string) {
	t.Helper()
	root := t.TempDir()
	md, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	x = index.New(md, index.Options{Precompute: PrecomputeFetch, NoBackground: true})
	t.Cleanup(x.Close)
	users := auth.SingleUser("user", "pass")
	serve := func(fi FetchIndex) string {
		thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
		return testsupport.Serve(t, &imap.Server{Backend: &IMAP{
			Auth:        &Authn{Users: func() *auth.Users { return users }, Throttle: thr, Counter: imapCounter{}, Proto: "imap"},
			Folders:     md,
			Counter:     imapCounter{},
			AppendLimit: 1 << 20,
			FetchIndex:  fi,
		}, Logger: slog.New(slog.DiscardHandler)}, imap.ErrServerClosed)
	}
	return md, x, serve(x), serve(nil)
}

func fetchAll(t *testing.T, addr, folder string) []string {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.IMAP("SELECT "+folder, "OK *")
	r := c.IMAP("FETCH 1:* "+fetchItems, "OK *")
	c.IMAP("LOGOUT", "OK *")
	return r.Untagged
}

// FETCH of ENVELOPE and BODYSTRUCTURE from the index's precomputed data
// answers exactly what parsing the files answers, in INBOX and in a
// folder, for mail of every shape and for a file another program dropped
// in with bare LF line ends.
func TestFetchFromIndexEqualsParsed(t *testing.T) {
	md, x, indexed, plain := twinIMAP(t)
	for _, msg := range precomputeCorpus {
		if err := md.Deliver(context.Background(), md.NewID(), []string{"user"}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	foreign := "From: lf@example.com\nSubject: bare LF\nContent-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: text/plain\n\nline one\nline two\n--z--\n"
	if err := os.WriteFile(filepath.Join(md.Root(), "user", "new", "1765100000.M1P1.otherhost"), []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	// A folder filled by COPY, indexed like INBOX.
	c := testsupport.Dial(t, plain)
	c.IMAPLogin("user", "pass")
	c.IMAP("CREATE Projects", "OK *")
	c.IMAP("SELECT INBOX", "OK *")
	c.IMAP("COPY 1:* Projects", "OK *")
	c.IMAP("LOGOUT", "OK *")
	n := len(precomputeCorpus) + 1
	for _, box := range []string{"user", index.BoxName("user", "Projects")} {
		if err := x.Flush(box); err != nil {
			t.Fatal(err)
		}
	}
	for _, folder := range []string{"INBOX", "Projects"} {
		want := fetchAll(t, plain, folder)
		got := fetchAll(t, indexed, folder)
		if len(want) != n {
			t.Fatalf("%s: %d FETCH responses, want %d: %q", folder, len(want), n, want)
		}
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Errorf("%s message %d from the index:\n%s\nparsed:\n%s", folder, i+1, got[i], want[i])
				}
			}
			t.Fatalf("%s: %d responses from the index, %d parsed", folder, len(got), len(want))
		}
		// The multipart whose boundary never occurs has one empty part.
		i := slices.IndexFunc(want, func(l string) bool { return strings.Contains(l, `"broken multipart"`) })
		if i < 0 || !strings.Contains(want[i], `BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")`) {
			t.Errorf("%s: the multipart without parts: %q", folder, want)
		}
		if testing.Verbose() {
			for _, l := range want {
				t.Log(l)
			}
		}
	}
}

// Once a folder is indexed, FETCH ENVELOPE BODYSTRUCTURE reads no message
// file: a message's content never changes under its name, so a file
// rewritten in place (which no mail program does) still answers what was
// indexed. Without the index, the same FETCH shows the rewritten file:
// the index is what answered.
func TestFetchFromIndexReadsNoFile(t *testing.T) {
	md, x, indexed, plain := twinIMAP(t)
	id := md.NewID()
	if err := md.Deliver(context.Background(), id, []string{"user"}, strings.NewReader("From: a@example.com\r\nSubject: Original\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := x.Flush("user"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(md.Root(), "user", "new", id+".eml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(raw, []byte("Original"), []byte("Replaced"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, indexed, "INBOX"); len(got) != 1 || !strings.Contains(got[0], `"Original"`) {
		t.Fatalf("FETCH with the index: %q, want the indexed subject", got)
	}
	if got := fetchAll(t, plain, "INBOX"); len(got) != 1 || !strings.Contains(got[0], `"Replaced"`) {
		t.Fatalf("FETCH without the index: %q, want the file's subject", got)
	}
}

// The encoding of precomputed data decodes to what was encoded, and
// damaged data (cut anywhere, another version) is refused, never a panic.
func TestFetchDataDamaged(t *testing.T) {
	for i, msg := range precomputeCorpus {
		data := PrecomputeFetch([]byte(msg))
		p, ok := decodeFetch(data)
		if !ok {
			t.Fatalf("message %d: own encoding refused", i)
		}
		if again := encodeParsed(p); !bytes.Equal(again, data) {
			t.Fatalf("message %d: decode then encode differs", i)
		}
		for cut := range len(data) {
			if _, ok := decodeFetch(data[:cut]); ok {
				t.Fatalf("message %d: data cut at %d of %d accepted", i, cut, len(data))
			}
		}
		other := slices.Clone(data)
		other[0] = fetchDataVersion + 1
		if _, ok := decodeFetch(other); ok {
			t.Fatalf("message %d: another version accepted", i)
		}
	}
}

func FuzzDecodeFetch(f *testing.F) {
	for _, msg := range precomputeCorpus {
		f.Add(PrecomputeFetch([]byte(msg)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, ok := decodeFetch(data); ok {
			if _, ok := decodeFetch(encodeParsed(p)); !ok {
				t.Fatal("re-encoding of accepted data refused")
			}
		}
	})
}

// imapOn serves md over IMAP with the index's FETCH data, when x is set.
func imapOn(t *testing.T, md *maildir.Maildir, x *index.Index) string {
	t.Helper()
	users := auth.SingleUser("user", "pass")
	thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	b := &IMAP{
		Auth:        &Authn{Users: func() *auth.Users { return users }, Throttle: thr, Counter: imapCounter{}, Proto: "imap"},
		Folders:     md,
		Counter:     imapCounter{},
		AppendLimit: 1 << 20,
	}
	if x != nil {
		b.FetchIndex = x
	}
	return testsupport.Serve(t, &imap.Server{Backend: b, Logger: slog.New(slog.DiscardHandler)}, imap.ErrServerClosed)
}

// SELECT of a large folder takes each message's size and INTERNALDATE from
// the index instead of a stat per file: the same UIDs, sizes, dates and
// flags as a store that stats every file, for our files, files another
// program dropped in, and APPENDed messages with their own date. The
// index is what answered: a file's modification time changed after it
// was indexed still shows the indexed INTERNALDATE (as Dovecot's cache
// does), while the store without the index shows the new one.
func TestSelectFromIndexEqualsStat(t *testing.T) {
	root := t.TempDir()
	open := func() *maildir.Maildir {
		md, err := maildir.New(root, maildir.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { md.Close() })
		return md
	}
	plainMD, indexedMD := open(), open()
	x := index.New(indexedMD, index.Options{Precompute: PrecomputeFetch, NoBackground: true})
	t.Cleanup(x.Close)
	indexedMD.UseIndex(x)
	plain, indexed := imapOn(t, plainMD, nil), imapOn(t, indexedMD, x)

	var firstID string
	for i := range 150 {
		id := plainMD.NewID()
		if i == 0 {
			firstID = id
		}
		msg := "From: a@example.com\r\nSubject: message " + strings.Repeat("x", i) + "\r\n\r\nbody\r\n"
		if err := plainMD.Deliver(context.Background(), id, []string{"user"}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		name := filepath.Join(root, "user", "new", "1765100000.M"+strings.Repeat("9", i+1)+"P1.otherhost")
		if err := os.WriteFile(name, []byte("Subject: foreign\n\nbare LF body\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := testsupport.Dial(t, plain)
	c.IMAPLogin("user", "pass")
	msg := "From: b@example.com\r\nSubject: appended\r\n\r\nold mail\r\n"
	c.Send("a1 APPEND INBOX (\\Seen) \"01-Feb-2020 10:00:00 +0000\" {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
	if r := c.IMAPUntil("a1"); !strings.HasPrefix(r.Status, "OK") {
		t.Fatalf("APPEND: %s", r.Status)
	}
	c.IMAP("LOGOUT", "OK *")
	if err := x.Flush("user"); err != nil {
		t.Fatal(err)
	}
	const items = "(UID FLAGS INTERNALDATE RFC822.SIZE)"
	fetch := func(addr string) []string {
		c := testsupport.Dial(t, addr)
		c.IMAPLogin("user", "pass")
		c.IMAP("EXAMINE INBOX", "OK *")
		r := c.IMAP("FETCH 1:* "+items, "OK *")
		c.IMAP("LOGOUT", "OK *")
		return r.Untagged
	}
	// The index's first look at the folder: before the plain store's, so
	// that the UID list it reads is the one it writes.
	got := fetch(indexed)
	want := fetch(plain)
	if len(want) != 154 || !slices.Equal(got, want) {
		t.Fatalf("with the index (%d):\n%s\nstat'ing each file (%d):\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, `" 1-Feb-2020 10:00:00 +0000"`) }) {
		t.Fatalf("APPEND's date lost: %q", got)
	}

	// Change a file's time behind both stores' backs, then look again with
	// fresh stores (nothing cached in memory).
	path := filepath.Join(root, "user", "new", firstID+".eml")
	if err := os.Chtimes(path, time.Now(), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	plainMD2, indexedMD2 := open(), open()
	indexedMD2.UseIndex(x)
	got = fetch(imapOn(t, indexedMD2, x))
	want = fetch(imapOn(t, plainMD2, nil))
	if strings.Contains(got[0], "2001") || !strings.Contains(want[0], " 1-Jan-2001") {
		t.Fatalf("after the file's time changed: with the index %q, stat'ing %q", got[0], want[0])
	}
}
