package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// runFiles is the no-protocol baseline: -conns writers each store -msgs
// messages of -size octets in the Maildir -dir the way a careful program
// does it with one file per message and no sharing between writers: create
// tmp/<name>, write, fsync, close, rename to new/<name>, fsync new/. What
// this reaches on a machine is the rate of durable one-file-per-message
// storage with nothing else to do; a server that shares no fsyncs cannot be
// faster. Latency is per message, from create to the end of the new/ fsync.
func runFiles(ctx context.Context, o *options) (Result, error) {
	if o.dir == "" {
		return Result{}, errors.New("-mode files needs -dir")
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(o.dir, sub), 0o700); err != nil {
			return Result{}, err
		}
	}
	return runWorkers(ctx, o, filesWorker), nil
}

func filesWorker(ctx context.Context, o *options, w int, col *collector) {
	rng := rand.New(rand.NewPCG(uint64(o.seed), uint64(w)))
	var raws [variants][]byte
	for i := range variants {
		raws[i], _ = makeMessage(rng, o.size, w*variants+i)
	}
	tag := rng.Uint32()
	for i := 0; i < o.msgs; i++ {
		if ctx.Err() != nil {
			col.fail(errors.New("duration cap reached"), o.msgs-i)
			return
		}
		t0 := time.Now()
		name := fmt.Sprintf("%016x.%08x.%02x%06x.eml", t0.UnixNano(), tag, w&0xff, i)
		raw := raws[i%variants]
		if err := storeFile(o.dir, name, raw); err != nil {
			col.fail(err, 1)
			continue
		}
		col.ok(time.Since(t0), len(raw))
	}
}

// storeFile writes data durably as dir/new/name through dir/tmp/name.
func storeFile(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "new", name))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Join(dir, "new"))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
