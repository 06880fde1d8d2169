package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"postoffice/internal/config"
	"postoffice/internal/server"
	"postoffice/internal/store/maildir"
	"postoffice/internal/store/migrate"
)

const migrateUsage = `Usage:
  postoffice migrate --from maildir --to postgres [--mailbox NAME]... [--dry-run] [flags]
  postoffice migrate --from postgres --to maildir [--mailbox NAME]... [--dry-run] [flags]

Moves mailboxes between the Maildir at --mailbox-dir and the shared store
(--pg-url, --s3-endpoint, --s3-bucket...), keeping message ids, UIDs,
UIDVALIDITY, UIDNEXT, flags, keywords, folders, subscriptions, received
times and the message files' bytes. Messages already in the target are
skipped, so an interrupted run can be run again. Run it with the server
stopped. The schema migrations are applied first.
`

// mailboxNames is a repeatable --mailbox flag taking comma lists.
type mailboxNames []string

func (l *mailboxNames) String() string { return strings.Join(*l, ",") }
func (l *mailboxNames) Set(v string) error {
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			*l = append(*l, n)
		}
	}
	return nil
}

func runMigrate(args []string, stdout, stderr io.Writer) int {
	const prog = "postoffice migrate"
	var (
		from, to  string
		dryRun    bool
		mailboxes mailboxNames
	)
	// The shared store's settings are checked as for --store postgres;
	// the Maildir is --mailbox-dir whatever the store setting.
	args = append([]string{"--store", "postgres"}, args...)
	cfg, rest, err := config.ParseArgs(prog, args, nil, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "source store: maildir or postgres")
		fs.StringVar(&to, "to", "", "target store: postgres or maildir")
		fs.BoolVar(&dryRun, "dry-run", false, "print what would move, change nothing")
		fs.Var(&mailboxes, "mailbox", "mailbox to move (repeatable, or a comma list; default all)")
	})
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, migrateUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	if len(rest) != 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n\n%s", prog, rest, migrateUsage)
		return 2
	}
	toShared := from == "maildir" && to == "postgres"
	if !toShared && !(from == "postgres" && to == "maildir") {
		fmt.Fprintf(stderr, "%s: --from maildir --to postgres, or --from postgres --to maildir (got --from %q --to %q)\n\n%s", prog, from, to, migrateUsage)
		return 2
	}
	if cfg.PGURL == "" || cfg.S3Endpoint == "" || cfg.S3Bucket == "" {
		fmt.Fprintf(stderr, "%s: the shared store needs --pg-url, --s3-endpoint and --s3-bucket\n", prog)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	md, err := maildir.New(cfg.MailboxDir, maildir.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", prog, cfg.Setting("mailbox-dir"), err)
		return 1
	}
	defer md.Close()
	cfg.SweepInterval = -1 // no sweeper in a migration
	st, pool, err := server.OpenShared(ctx, cfg, log, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	defer pool.Close()
	defer st.Close()
	verb := "moved"
	if dryRun {
		verb = "would move"
	}
	report := func(r migrate.Result) {
		fmt.Fprintf(stdout, "%s/%s: %s %d of %d messages\n", r.Mailbox, r.Folder, verb, r.Moved, r.Messages)
	}
	if toShared {
		err = migrate.ToShared(ctx, md, st, mailboxes, dryRun, report)
	} else {
		err = migrate.ToMaildir(ctx, st, md, mailboxes, dryRun, report)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}
