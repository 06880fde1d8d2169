package maildir

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Modification sequences (RFC 7162 §3.1.1: a message's MODSEQ grows with
// every change of it; the folder's HIGHESTMODSEQ is the largest given
// out). Dovecot keeps them in its index files, which we do not write; we
// keep them beside the uidlist in postoffice-modseq, a file Dovecot does not
// read:
//
//	P1 V<uidvalidity> H<highestmodseq>
//	<uid> <modseq> :<flag letters>
//	<uid> <modseq> -
//
// The header is written at compaction; records are appended after it, a
// later record of a UID replacing an earlier one ("-": expunged, which
// still raises HIGHESTMODSEQ). A flag change appends one line and
// fdatasyncs it before the rename it describes, so a change is never
// durable without its modseq (O(1) per change); the file is rewritten
// whole (compacted) when the uidlist is. The flag letters recorded let a
// later Sync, in this process or after a restart, see that another program
// changed a message's flags (they differ from the file name's) and give it
// a new modseq. Appends take an flock on the file, so processes sharing a
// folder never give out one modseq twice.
const modseqName = "postoffice-modseq"

// modseqRec is the last record of a UID.
type modseqRec struct {
	modseq uint64
	info   string
	gone   bool
}

// modseqLog is an open postoffice-modseq.
type modseqLog struct {
	m        *Maildir
	path     string
	f        *os.File
	off      int64 // octets applied
	validity uint32
	highest  uint64
	recs     map[uint32]modseqRec
	lines    int // records in the file
}

// openModseqLog opens (creating it empty if missing) and reads the log in
// dir.
func openModseqLog(m *Maildir, dir string) (*modseqLog, error) {
	l := &modseqLog{m: m, path: filepath.Join(dir, modseqName)}
	if err := l.reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// reopen opens the file at l.path and reads it from the start, keeping
// highest (it never goes down).
func (l *modseqLog) reopen() error {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, filePerm)
	if err != nil {
		return noSpace(err)
	}
	l.f, l.off, l.recs, l.lines, l.validity = f, 0, make(map[uint32]modseqRec), 0, 0
	return l.catchUp()
}

// catchUp applies the complete lines after l.off.
func (l *modseqLog) catchUp() error {
	if _, err := l.f.Seek(l.off, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(l.f, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			return nil // a partial last line (a torn append) is not applied
		}
		if err != nil {
			return err
		}
		l.off += int64(len(line))
		l.apply(strings.TrimSuffix(line, "\n"))
	}
}

// apply reads one line; lines it cannot read are skipped.
func (l *modseqLog) apply(line string) {
	f := strings.SplitN(line, " ", 3)
	if len(f) == 3 && f[0] == "P1" {
		if v, err := strconv.ParseUint(strings.TrimPrefix(f[1], "V"), 10, 32); err == nil {
			l.validity = uint32(v)
		}
		if h, err := strconv.ParseUint(strings.TrimPrefix(f[2], "H"), 10, 64); err == nil {
			l.highest = max(l.highest, h)
		}
		return
	}
	if len(f) != 3 {
		return
	}
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	ms, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || uid == 0 || ms == 0 {
		return
	}
	var r modseqRec
	switch {
	case f[2] == "-":
		r = modseqRec{modseq: ms, gone: true}
	case strings.HasPrefix(f[2], ":"):
		r = modseqRec{modseq: ms, info: f[2][1:]}
	default:
		return
	}
	l.recs[uint32(uid)] = r
	l.highest = max(l.highest, ms)
	l.lines++
}

// locked runs fn holding the file's flock, after catching up with what
// other processes appended (or reopening a file a compaction replaced).
func (l *modseqLog) locked(fn func() error) error {
	for range 5 {
		if err := flock(l.f, syscall.LOCK_EX); err != nil {
			return err
		}
		same, err := sameFile(l.f, l.path)
		if err == nil && same {
			err = l.catchUp()
			if err == nil {
				err = fn()
			}
			// Unlocked by the close of a replaced file, else here.
			if l.f != nil {
				flock(l.f, syscall.LOCK_UN)
			}
			return err
		}
		flock(l.f, syscall.LOCK_UN)
		if err != nil {
			return err
		}
		if err := l.reopen(); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: replaced concurrently, giving up", l.path)
}

// change is one modseq record to write: a message's new flag letters, or
// its expunge.
type change struct {
	uid  uint32
	info string
	gone bool
}

// append gives each change the next modseq and appends the records,
// durably (fdatasync) before it returns; it returns their modseqs.
func (l *modseqLog) append(cs []change) ([]uint64, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	out := make([]uint64, len(cs))
	err := l.locked(func() error {
		fi, err := l.f.Stat()
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if fi.Size() > l.off {
			b.WriteByte('\n') // end a torn line
		}
		next := l.highest
		for i, c := range cs {
			next++
			out[i] = next
			b.WriteString(recordLine(c, next))
		}
		if _, err := l.f.Write(b.Bytes()); err != nil {
			return noSpace(err)
		}
		if err := fdatasync(l.f); err != nil {
			return err
		}
		l.off = fi.Size() + int64(b.Len())
		for i, c := range cs {
			l.recs[c.uid] = modseqRec{modseq: out[i], info: c.info, gone: c.gone}
			l.lines++
		}
		l.highest = next
		return nil
	})
	return out, err
}

func recordLine(c change, ms uint64) string {
	if c.gone {
		return fmt.Sprintf("%d %d -\n", c.uid, ms)
	}
	return fmt.Sprintf("%d %d :%s\n", c.uid, ms, c.info)
}

// compact rewrites the log as validity, the header with HIGHESTMODSEQ,
// and one record per message of live (uid -> record): a new file,
// fsynced, renamed into place, the directory fsynced.
func (l *modseqLog) compact(validity uint32, live map[uint32]modseqRec) error {
	return l.locked(func() error {
		for _, r := range live {
			l.highest = max(l.highest, r.modseq)
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "P1 V%d H%d\n", validity, l.highest)
		uids := make([]uint32, 0, len(live))
		for u := range live {
			uids = append(uids, u)
		}
		slices.Sort(uids)
		for _, u := range uids {
			r := live[u]
			b.WriteString(recordLine(change{uid: u, info: r.info}, r.modseq))
		}
		tmp := l.path + ".new"
		if err := os.WriteFile(tmp, b.Bytes(), filePerm); err != nil {
			os.Remove(tmp)
			return noSpace(err)
		}
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := os.Rename(tmp, l.path); err != nil {
			f.Close()
			return err
		}
		if err := l.m.syncers.get(filepath.Dir(l.path)).Sync(); err != nil {
			f.Close()
			return err
		}
		l.f.Close() // releases the flock: waiters find a new file
		l.f, l.off, l.validity, l.lines = f, int64(b.Len()), validity, len(live)
		l.recs = make(map[uint32]modseqRec, len(live))
		for u, r := range live {
			l.recs[u] = r
		}
		return nil
	})
}

func (l *modseqLog) close() {
	if l.f != nil {
		l.f.Close()
	}
}
