package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"syscall"
)

// Check checks a directory to be a Maildir root before a server starts on
// it ("postoffice check"), and returns one line per problem: the directory
// (or, if it does not exist yet, the directory it would be created in) is a
// directory where a file can be created, hard linked and removed, and each
// existing mailbox's tmp/, new/ and cur/ are on the root's filesystem
// (delivery links from tmp/ to new/).
func Check(dir string) []string {
	var problems []string
	fi, err := os.Stat(dir)
	probe := dir
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// The server creates it: check the nearest existing parent.
		probe = filepath.Dir(filepath.Clean(dir))
		for {
			pi, perr := os.Stat(probe)
			if perr == nil {
				if !pi.IsDir() {
					return []string{fmt.Sprintf("%s cannot be created: %s is not a directory", dir, probe)}
				}
				break
			}
			if next := filepath.Dir(probe); next != probe {
				probe = next
				continue
			}
			return []string{fmt.Sprintf("%s cannot be created: %v", dir, perr)}
		}
	case err != nil:
		return []string{err.Error()}
	case !fi.IsDir():
		return []string{dir + " is not a directory"}
	}
	if err := probeLink(probe); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", probe, err))
	}
	if probe != dir {
		return problems
	}
	// Every mailbox's subdirectories on the root's filesystem.
	rootDev, ok := device(fi)
	if !ok {
		return problems
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return append(problems, err.Error())
	}
	for _, e := range entries {
		if !e.IsDir() || !store.ValidMailboxName(e.Name()) {
			continue
		}
		// The mailbox's folders (Maildir++ ".A.B" directories) are
		// checked as INBOX is; its other files (dovecot-uidlist,
		// dovecot-keywords, subscriptions, postoffice-modseq, locks) are
		// not a problem.
		var paths []string
		for _, rel := range append([]string{""}, folderDirs(filepath.Join(dir, e.Name()))...) {
			for _, sub := range []string{subTmp, subNew, subCur} {
				paths = append(paths, filepath.Join(dir, e.Name(), rel, sub))
			}
		}
		for _, p := range paths {
			si, err := os.Stat(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			if d, ok := device(si); ok && d != rootDev {
				problems = append(problems, fmt.Sprintf("%s is on another filesystem than %s: deliveries hard-link from tmp/ to new/", p, dir))
			}
		}
	}
	return problems
}

// folderDirs returns the folder directory names in a mailbox directory.
func folderDirs(mbDir string) []string {
	entries, _ := os.ReadDir(mbDir)
	var out []string
	for _, e := range entries {
		if _, ok := folderOfDir(e.Name()); ok && e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// probeLink creates a file in dir, hard-links it and removes both.
func probeLink(dir string) error {
	f, err := os.CreateTemp(dir, ".postoffice-check-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", unwrapSyscall(err))
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	link := name + ".link"
	if err := os.Link(name, link); err != nil {
		return fmt.Errorf("hard links do not work: %w", unwrapSyscall(err))
	}
	return os.Remove(link)
}

func device(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Dev), true
}

// unwrapSyscall shortens "link a b: operation not permitted" style errors
// to their system error when there is one.
func unwrapSyscall(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
