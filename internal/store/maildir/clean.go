package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"syscall"
	"time"
)

// CleanTmp removes leftovers of crashed deliveries from root/<mailbox>/tmp
// and returns how many files it removed. A file named by us is removed when
// its flock can be taken, that is when no delivery (of any process) is
// writing it. Any other file is left to its writer (another MDA, which does
// not use our locks) unless it is older than 36 hours, the Maildir
// specification's rule for abandoned tmp files. CleanTmp never reads new/ or
// cur/. A mailbox that does not exist has nothing to clean.
func (m *Maildir) CleanTmp(mailbox string) (removed int, err error) {
	if !store.ValidMailboxName(mailbox) {
		return 0, fmt.Errorf("clean tmp %q: %w", mailbox, store.ErrBadMailbox)
	}
	return m.cleanTmpDir(mailbox, filepath.Join(m.mailboxDir(mailbox), subTmp))
}

// cleanTmpDir is CleanTmp of one directory; label names it in errors and
// logs.
func (m *Maildir) cleanTmpDir(label, dir string) (removed int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean tmp %s: %w", label, err)
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		ok, err := m.cleanTmpFile(path, e)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed++
			m.log.Info("maildir: removed leftover tmp file", "mailbox", label, "file", e.Name())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("clean tmp %s: %w", label, err)
	}
	return removed, nil
}

// cleanTmpFile removes one tmp file if it is abandoned (see CleanTmp).
func (m *Maildir) cleanTmpFile(path string, e fs.DirEntry) (bool, error) {
	if !ourTmpName(e.Name()) {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if time.Since(fi.ModTime()) < staleForeignTmp {
			return false, nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		return true, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := tryLock(f); err != nil {
		if errors.Is(err, store.ErrLocked) {
			return false, nil // a live delivery
		}
		return false, err
	}
	// Remove the name only if it is still the file we locked, and do it
	// while holding the lock (see createTmp).
	same, err := sameFile(f, path)
	if err != nil || !same {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}

// cleanStaging removes what crashed processes left in the staging
// directory root/.tmp (stage.go): in every instance directory whose flock
// can be taken (its process is gone) the files CleanTmp would remove, then
// the directory itself. Live instances, this process's included, are
// skipped.
func (m *Maildir) cleanStaging() (removed int, err error) {
	base := filepath.Join(m.root, stageDirName)
	removed, err = m.cleanTmpDir(stageDirName, base)
	errs := []error{err}
	entries, err := os.ReadDir(base)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean tmp %s: %w", stageDirName, err))
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		lock, err := os.Open(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if err := tryLock(lock); err != nil {
			lock.Close()
			if !errors.Is(err, store.ErrLocked) {
				errs = append(errs, err)
			}
			continue // a live Maildir's
		}
		n, err := m.cleanTmpDir(filepath.Join(stageDirName, e.Name()), dir)
		removed += n
		errs = append(errs, err)
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
			errs = append(errs, err)
		}
		lock.Close()
	}
	return removed, errors.Join(errs...)
}

// cleanFolderTmp runs CleanTmp's rules on the tmp/ of every folder of
// mailbox (APPEND and COPY write there, under the same flock).
func (m *Maildir) cleanFolderTmp(mailbox string) (removed int, err error) {
	entries, err := os.ReadDir(m.mailboxDir(mailbox))
	if err != nil {
		return 0, fmt.Errorf("clean tmp %s: %w", mailbox, err)
	}
	var errs []error
	for _, e := range entries {
		f, ok := folderOfDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		n, err := m.cleanTmpDir(mailbox+"/"+f.name, filepath.Join(m.folderDir(mailbox, f), subTmp))
		removed += n
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// Recover implements store.Lifecycle: it runs CleanTmp on the staging directory
// root/.tmp and on every mailbox under the root (directories whose name is a
// valid mailbox name) and its folders' tmp/ and returns the total removed. It is meant for start-up
// and reads only the root and the tmp directories.
func (m *Maildir) Recover() (removed int, err error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return 0, fmt.Errorf("clean tmp: %w", err)
	}
	removed, err = m.cleanStaging()
	errs := []error{err}
	for _, e := range entries {
		if !e.IsDir() || !store.ValidMailboxName(e.Name()) {
			continue
		}
		n, err := m.CleanTmp(e.Name())
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
		n, err = m.cleanFolderTmp(e.Name())
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
