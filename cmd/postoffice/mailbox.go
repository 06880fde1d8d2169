package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/auth/tty"
	"postoffice/internal/config"
	"postoffice/internal/mailheader"
	"postoffice/internal/server"
	"postoffice/internal/store"
	"postoffice/internal/store/index"
	"postoffice/internal/store/maildir"
)

const mailboxUsage = `Usage:
  postoffice mailbox list  [flags]                every mailbox: messages, size, newest
  postoffice mailbox show  [flags] [-n N] USER    one mailbox and its N newest messages
  postoffice mailbox purge [flags] [--yes] USER   remove every message of a mailbox
  postoffice mailbox reindex [flags] USER         rebuild the index of every folder of a mailbox

The mailbox directory comes from --mailbox-dir, POSTOFFICE_MAILBOX_DIR or
the --config file, as for the server. list and show take no lock and do not
disturb a POP3 session. purge takes the mailbox's POP3 lock and refuses
while a session holds it; it asks for confirmation on a terminal, and needs
--yes otherwise. reindex reads every message of every folder again into
the folder's index file (postoffice-index.sqlite), with a progress line on
stderr; it may run beside the server, and a reindex cut short leaves an
index the server completes by itself.

Exit status: 0 done, 1 error, 2 usage.
`

// runMailbox implements "postoffice mailbox list|show|purge".
func runMailbox(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mailboxUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "show", "purge", "reindex":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, mailboxUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "postoffice mailbox: unknown command %q\n\n%s", sub, mailboxUsage)
		return 2
	}
	prog := "postoffice mailbox " + sub
	var (
		yes   bool
		limit int
	)
	cfg, rest, err := config.ParseArgs(prog, args, nil, stderr, func(fs *flag.FlagSet) {
		switch sub {
		case "show":
			fs.IntVar(&limit, "n", 10, "newest messages to show")
		case "purge":
			fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
		}
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(rest) != want {
		fmt.Fprintf(stderr, "%s: expected %d argument(s), got %d\n\n%s", prog, want, len(rest), mailboxUsage)
		return 2
	}
	if cfg.Shared() {
		// The shared store is browsed through a running node's web API.
		fmt.Fprintf(stderr, "%s: works on the Maildir store only; with --store postgres use the web inbox or its API (/api/v1) of a running node\n", prog)
		return 2
	}
	if _, err := os.Stat(cfg.MailboxDir); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	var st store.Store
	st, err = maildir.New(cfg.MailboxDir, maildir.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	var name string
	if want == 1 {
		name = auth.CanonicalName(rest[0])
		if !store.ValidMailboxName(name) {
			fmt.Fprintf(stderr, "%s: %q is not a mailbox name\n", prog, rest[0])
			return 2
		}
		if ok, err := st.HasMailbox(name); err != nil || !ok {
			fmt.Fprintf(stderr, "%s: no mailbox %s in %s\n", prog, name, filepath.Clean(cfg.MailboxDir))
			return 1
		}
	}
	switch sub {
	case "list":
		err = mailboxList(st, stdout)
	case "show":
		err = mailboxShow(st, name, limit, stdout)
	case "purge":
		err = mailboxPurge(st, name, yes, stdin, stdout)
	case "reindex":
		err = mailboxReindex(st.(*maildir.Maildir), name, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}

func mailboxList(st store.Store, w io.Writer) error {
	names, err := st.Mailboxes()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tMESSAGES\tSIZE\tNEWEST")
	for _, mb := range names {
		msgs, err := st.List(mb)
		if err != nil {
			return err
		}
		var size int64
		newest := "-"
		for _, m := range msgs {
			size += m.Size
		}
		if len(msgs) > 0 {
			newest = msgs[len(msgs)-1].Received.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", mb, len(msgs), humanSize(size), newest)
	}
	return tw.Flush()
}

func mailboxShow(st store.Store, name string, limit int, w io.Writer) error {
	msgs, err := st.List(name)
	if err != nil {
		return err
	}
	var size int64
	for _, m := range msgs {
		size += m.Size
	}
	fmt.Fprintf(w, "mailbox %s: %d messages, %s\n", name, len(msgs), humanSize(size))
	if len(msgs) == 0 || limit <= 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tSIZE\tFROM\tSUBJECT\tDATE\tID")
	for i := len(msgs) - 1; i >= 0 && i >= len(msgs)-limit; i-- {
		m := msgs[i]
		h := readHeader(m.Open)
		date := "-"
		if !h.date.IsZero() {
			date = h.date.Format(time.RFC1123Z)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Received.Local().Format(time.DateTime), humanSize(m.Size),
			clip(h.from, 40), clip(h.subject, 60), date, m.ID)
	}
	return tw.Flush()
}

// header is what show prints of a message's header.
type header struct {
	from, subject string
	date          time.Time
}

// readHeader parses the header of the message open returns (at most
// 256 KiB is read); a message that cannot be read or parsed gives what
// could be found. The header ends where package mailheader's rule says
// (as for POP3 TOP and the web inbox): at the empty line, or at the first
// line that is neither a header field nor a continuation, so that
// "Subject: Test Email\r\nHello Bob,\r\n" has the subject "Test Email".
func readHeader(open func() (io.ReadCloser, error)) header {
	var h header
	f, err := open()
	if err != nil {
		return h
	}
	defer f.Close()
	br := bufio.NewReader(io.LimitReader(f, 256<<10))
	var block []byte
	for first := true; ; first = false {
		line, err := br.ReadBytes('\n') // bounded by the LimitReader
		if len(line) == 0 || mailheader.Ends(line, first) {
			break
		}
		block = append(block, line...)
		if !bytes.HasSuffix(line, []byte("\n")) {
			block = append(block, '\r', '\n')
		}
		if err != nil {
			break
		}
	}
	block = append(block, '\r', '\n')
	msg, err := mail.ReadMessage(bytes.NewReader(block))
	if err != nil {
		return h
	}
	dec := new(mime.WordDecoder)
	decode := func(v string) string {
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		return strings.ToValidUTF8(v, "?")
	}
	h.from = decode(msg.Header.Get("From"))
	h.subject = decode(msg.Header.Get("Subject"))
	if d, err := msg.Header.Date(); err == nil {
		h.date = d
	}
	return h
}

// clip shortens s to n runes and removes control characters, for a table
// cell.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func mailboxPurge(st store.Store, name string, yes bool, stdin io.Reader, w io.Writer) error {
	md, err := st.OpenMaildrop(name)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("mailbox %s is in use by a POP3 session; try again later", name)
	}
	if err != nil {
		return err
	}
	defer md.Close()
	msgs := md.Messages()
	if len(msgs) == 0 {
		fmt.Fprintf(w, "mailbox %s is empty\n", name)
		return nil
	}
	var size int64
	idx := make([]int, len(msgs))
	for i, m := range msgs {
		idx[i] = i
		size += m.Size
	}
	if !yes {
		f, ok := stdin.(*os.File)
		if !ok || !tty.IsTerminal(f.Fd()) {
			return errors.New("not a terminal: give --yes to confirm")
		}
		fmt.Fprintf(w, "Remove all %d messages (%s) of mailbox %s? [y/N] ", len(msgs), humanSize(size), name)
		line, _ := bufio.NewReader(io.LimitReader(stdin, 64)).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("not confirmed; nothing removed")
		}
	}
	if err := md.Commit(idx); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed %d messages (%s) from mailbox %s\n", len(msgs), humanSize(size), name)
	return nil
}

// humanSize formats n octets in binary units.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// mailboxReindex rebuilds the index of every folder of mailbox, INBOX
// first, printing progress to stderr and a summary to stdout.
func mailboxReindex(md *maildir.Maildir, mailbox string, stdout, stderr io.Writer) error {
	folders, err := md.ListFolders(mailbox)
	if err != nil {
		return err
	}
	x := index.New(md, server.IndexOptions(nil, true))
	defer x.Close()
	began := time.Now()
	total := 0
	for _, f := range folders {
		box := index.BoxName(mailbox, f.Name)
		last := time.Time{}
		d, n, err := x.Reindex(box, func(done, all int) {
			if time.Since(last) >= 500*time.Millisecond || done == all {
				last = time.Now()
				fmt.Fprintf(stderr, "reindex %s %s: %d/%d messages\n", mailbox, f.Name, done, all)
			}
		})
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		total += n
		if d.Added+d.Removed+d.Moved > 0 {
			fmt.Fprintf(stderr, "reindex %s %s: the index missed %d, had %d removed and %d moved\n", mailbox, f.Name, d.Added, d.Removed, d.Moved)
		}
	}
	fmt.Fprintf(stdout, "reindexed %s: %d messages in %d folders in %s\n", mailbox, total, len(folders), time.Since(began).Round(time.Millisecond))
	return nil
}
