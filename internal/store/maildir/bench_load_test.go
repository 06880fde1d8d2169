package maildir

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkDeliver2KBWriters measures durable delivery of 2 KiB messages by
// 8 and 64 concurrent writers into one mailbox, the shape of the SMTP load
// of bench/run.sh: the directory fsyncs are shared (group commit), the file
// fdatasyncs are not.
func BenchmarkDeliver2KBWriters(b *testing.B) {
	for _, writers := range []int{8, 64} {
		b.Run(strconv.Itoa(writers), func(b *testing.B) {
			m := newTestMaildir(b, Options{})
			b.SetBytes(int64(len(message2KB)))
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := m.Deliver(context.Background(), m.NewID(), []string{"u"}, strings.NewReader(message2KB)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkDeliver1MB measures durable delivery of one 1 MiB message (the
// streaming copy and the fdatasync of its data).
func BenchmarkDeliver1MB(b *testing.B) {
	line := strings.Repeat("z", 76) + "\r\n"
	msg := "Subject: big\r\n\r\n" + strings.Repeat(line, (1<<20)/len(line))
	m := newTestMaildir(b, Options{})
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := m.Deliver(context.Background(), m.NewID(), []string{"u"}, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenMaildrop10000 measures lock + snapshot (the POP3 listing) of
// a mailbox of 10,000 messages of ours; compare with
// BenchmarkOpenMaildrop1000 for how it grows.
func BenchmarkOpenMaildrop10000(b *testing.B) {
	const n = 10000
	m := newTestMaildir(b, Options{})
	deliver(b, m, message2KB, "u") // create the mailbox
	dir := filepath.Join(m.Root(), "u", "new")
	for range n - 1 {
		// Written directly: the setup need not be durable.
		if err := os.WriteFile(filepath.Join(dir, m.NewID()+msgExt), []byte(message2KB), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		md, err := m.OpenMaildrop("u")
		if err != nil {
			b.Fatal(err)
		}
		if got := len(md.Messages()); got != n {
			b.Fatalf("%d messages", got)
		}
		md.Close()
	}
}
