package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Dovecot's dotlocks (dotlock_use_excl = yes, its default): the lock of
// file F is F.lock, created with O_CREAT|O_EXCL; whoever created it holds
// the lock. The holder either removes it (release) or writes F's new
// content into it and renames it over F (replace: the new content and the
// release in one atomic step, as Dovecot's file_dotlock_replace does). A
// lock file not changed for dotlockStale is left by a dead holder and is
// removed (Dovecot's dotlock_stale_timeout for the uidlist is 2 minutes).
//
// Postoffice also holds an flock on its lock files, which the kernel lets
// go when the process dies: a lock file nobody holds an flock on and not
// changed for dotlockOrphan was left by a Postoffice killed while writing
// (kill -9 between create and rename), and is removed then instead of
// after dotlockStale, so that a restart does not wait two minutes. A live
// Dovecot holds the uidlist lock for milliseconds, far less than that.

const (
	dotlockOrphan  = 3 * time.Second
	dotlockStale   = 2 * time.Minute
	dotlockTimeout = dotlockStale + 30*time.Second // never waits for ever
)

// dotlock is a held dotlock: its file, open for writing.
type dotlock struct {
	path   string // F.lock
	target string // F
	f      *os.File
}

// takeDotlock takes the dotlock of target, waiting while someone else holds
// it and removing a stale one.
func takeDotlock(target string) (*dotlock, error) {
	path := target + ".lock"
	deadline := time.Now().Add(dotlockTimeout)
	wait := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, filePerm)
		if err == nil {
			if err := tryLock(f); err != nil {
				f.Close()
				os.Remove(path)
				return nil, fmt.Errorf("lock %s: %w", filepath.Base(target), err)
			}
			return &dotlock{path: path, target: target, f: f}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if fi, serr := os.Stat(path); serr == nil && time.Since(fi.ModTime()) > dotlockOrphan && orphaned(path, fi) {
			continue
		}
		if fi, serr := os.Stat(path); serr == nil && time.Since(fi.ModTime()) > dotlockStale {
			// A holder that died: remove its lock (only if it is still
			// the same stale file).
			if fi2, err := os.Stat(path); err == nil && os.SameFile(fi, fi2) {
				os.Remove(path)
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %s: held for too long", filepath.Base(target))
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// orphaned removes the lock file at path, last seen as fi, when no process
// holds an flock on it (its Postoffice holder died), and reports whether
// it did.
func orphaned(path string, fi fs.FileInfo) bool {
	f, err := os.Open(path)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	defer f.Close()
	if tryLock(f) != nil {
		return false // a live holder
	}
	if same, err := sameFile(f, path); err != nil || !same {
		return err == nil
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		return false
	}
	os.Remove(path)
	return true
}

// release removes the lock without changing the target.
func (l *dotlock) release() {
	l.f.Close()
	os.Remove(l.path)
}

// replace makes data the target's content and releases the lock: data is
// written into the lock file, fsynced, the lock file renamed over the
// target and the directory fsynced. When it returns nil the new content
// is durable; on error the target is unchanged (or, after the rename,
// already new) and the lock is released.
func (l *dotlock) replace(m *Maildir, data []byte) error {
	defer l.f.Close()
	if _, err := l.f.Write(data); err != nil {
		os.Remove(l.path)
		return noSpace(err)
	}
	if err := l.f.Sync(); err != nil {
		os.Remove(l.path)
		return err
	}
	if err := os.Rename(l.path, l.target); err != nil {
		os.Remove(l.path)
		return err
	}
	return m.syncers.get(filepath.Dir(l.target)).Sync()
}
