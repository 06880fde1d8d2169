// Package migrate moves mailboxes between the Maildir store and the
// shared store (PostgreSQL + S3), keeping message ids, UIDs,
// UIDVALIDITY, UIDNEXT, flags, keywords, folders, special use,
// subscriptions, received times, and the message files' bytes. It is
// idempotent: a message already in the target (same mailbox and id) is
// skipped, so a run that was cut off can be run again. Run it with the
// server stopped.
package migrate

import (
	"context"
	"fmt"
	"io"
	"slices"

	"postoffice/internal/store"
	"postoffice/internal/store/maildir"
	"postoffice/internal/store/shared"
)

// Result is what a migration did to one folder.
type Result struct {
	Mailbox, Folder string
	Messages        int // in the source
	Moved           int // written to the target (the others were there)
}

// Report is called with each folder's result (may be nil).
type Report func(Result)

// ToShared moves mailboxes (all of md's when empty) from md into s. With
// dryRun it only reports what it would move (the messages whose UID the
// target folder lacks) and changes nothing in s.
func ToShared(ctx context.Context, md *maildir.Maildir, s *shared.Store, mailboxes []string, dryRun bool, report Report) error {
	if len(mailboxes) == 0 {
		var err error
		if mailboxes, err = md.Mailboxes(); err != nil {
			return err
		}
	}
	for _, mb := range mailboxes {
		if err := lockCheck(md, mb); err != nil {
			return err
		}
		folders, err := md.ListFolders(mb)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", mb, err)
		}
		// INBOX first: its ids (the POP3 UIDLs) are kept whatever copies
		// elsewhere carry the same id.
		slices.SortStableFunc(folders, func(a, b store.FolderInfo) int {
			return cmpBool(b.Name == store.Inbox, a.Name == store.Inbox)
		})
		for _, f := range folders {
			var r Result
			if dryRun {
				src, err := md.ExportFolder(mb, f.Name)
				if err != nil {
					return err
				}
				have, err := s.MigratedUIDs(ctx, mb, f.Name)
				if err != nil {
					return err
				}
				r = Result{Mailbox: mb, Folder: f.Name, Messages: len(src.State.Messages)}
				for _, m := range src.State.Messages {
					if !have[m.UID] {
						r.Moved++
					}
				}
			} else {
				src, err := md.ExportFolder(mb, f.Name)
				if err != nil {
					return err
				}
				n, err := s.ImportFolder(ctx, md, mb, f.Name, f.SpecialUse)
				if err != nil {
					return err
				}
				r = Result{Mailbox: mb, Folder: f.Name, Messages: len(src.State.Messages), Moved: n}
			}
			if report != nil {
				report(r)
			}
		}
		if dryRun {
			continue
		}
		subs, err := md.Subscriptions(mb)
		if err != nil {
			return err
		}
		if err := s.ImportSubscriptions(ctx, mb, subs); err != nil {
			return err
		}
	}
	return nil
}

// lockCheck refuses a mailbox whose POP3 maildrop is held (a server is
// using it).
func lockCheck(md *maildir.Maildir, mailbox string) error {
	d, err := md.OpenMaildrop(mailbox)
	if err != nil {
		if err == store.ErrLocked {
			return fmt.Errorf("migrate %s: its maildrop is locked (is the server running? stop it first)", mailbox)
		}
		return fmt.Errorf("migrate %s: %w", mailbox, err)
	}
	d.Close()
	return nil
}

// ToMaildir moves mailboxes (all of s's when empty) from s into md.
func ToMaildir(ctx context.Context, s *shared.Store, md *maildir.Maildir, mailboxes []string, dryRun bool, report Report) error {
	if len(mailboxes) == 0 {
		var err error
		if mailboxes, err = s.Mailboxes(); err != nil {
			return err
		}
	}
	for _, mb := range mailboxes {
		folders, subs, err := s.ExportFolders(ctx, mb)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", mb, err)
		}
		for _, f := range folders {
			r := Result{Mailbox: mb, Folder: f.Name, Messages: len(f.Messages), Moved: len(f.Messages)}
			if !dryRun {
				kw := folderKeywords(f)
				msgs := make([]maildir.ImportMessage, 0, len(f.Messages))
				for _, m := range f.Messages {
					info, err := maildir.FileInfoLetters(append(append([]string{}, m.Flags...), m.Keywords...), kw)
					if err != nil {
						return fmt.Errorf("migrate %s/%s: message %s: %w", mb, f.Name, m.ID, err)
					}
					m := m
					msgs = append(msgs, maildir.ImportMessage{ID: m.ID, UID: m.UID, Info: info, Received: m.Received,
						Open: func(ctx context.Context) (io.ReadCloser, error) { return s.OpenRawBlob(ctx, m) }})
				}
				n, err := md.ImportFolder(ctx, mb, f.Name, f.UIDValidity, f.UIDNext, kw, msgs)
				if err != nil {
					return err
				}
				r.Moved = n
			}
			if report != nil {
				report(r)
			}
		}
		if !dryRun {
			if err := md.WriteSubscriptions(mb, subs); err != nil {
				return err
			}
		}
	}
	return nil
}

// folderKeywords returns the folder's keywords in their order, followed
// by those its messages carry that it does not list.
func folderKeywords(f shared.MigrationFolder) []string {
	kw := append([]string{}, f.Keywords...)
	seen := map[string]bool{}
	for _, k := range kw {
		seen[k] = true
	}
	for _, m := range f.Messages {
		for _, k := range m.Keywords {
			if !seen[k] {
				seen[k] = true
				kw = append(kw, k)
			}
		}
	}
	return kw
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
