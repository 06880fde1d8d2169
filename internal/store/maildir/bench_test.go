package maildir

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// message2KB is a 2 KiB CRLF message.
var message2KB = "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 62)+"\r\n", (2048-60)/64)

// BenchmarkDeliver2KB measures durable delivery (file fdatasync plus the
// group-committed new/ fsync) of 2 KiB messages to one mailbox.
func BenchmarkDeliver2KB(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		m := newTestMaildir(b, Options{})
		b.SetBytes(int64(len(message2KB)))
		for b.Loop() {
			if err := m.Deliver(context.Background(), m.NewID(), []string{"u"}, strings.NewReader(message2KB)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := newTestMaildir(b, Options{})
		b.SetBytes(int64(len(message2KB)))
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

// BenchmarkOpenMaildrop1000 measures lock + snapshot of a mailbox of 1000
// messages of ours (listing and stat, no content read).
func BenchmarkOpenMaildrop1000(b *testing.B) {
	m := newTestMaildir(b, Options{})
	deliver(b, m, message2KB, "u") // create the mailbox
	dir := filepath.Join(m.Root(), "u", "new")
	for range 999 {
		// Written directly: the setup need not be durable.
		if err := os.WriteFile(filepath.Join(dir, m.NewID()+msgExt), []byte(message2KB), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		md, err := m.OpenMaildrop("u")
		if err != nil {
			b.Fatal(err)
		}
		if n := len(md.Messages()); n != 1000 {
			b.Fatalf("%d messages", n)
		}
		md.Close()
	}
}

// BenchmarkOpenForeign measures a session over 100 foreign 2 KiB LF
// messages: snapshot (which scans each for its size) and reading each one
// through the CRLF normalizer.
func BenchmarkOpenForeign(b *testing.B) {
	m := newTestMaildir(b, Options{})
	lf := strings.ReplaceAll(message2KB, "\r\n", "\n")
	t0 := time.Now().Add(-time.Hour)
	for i := range 100 {
		putForeign(b, m, "u", "cur", fmt.Sprintf("%d.M%dP1.host:2,S", 1700000000+i, i), lf, t0.Add(time.Duration(i)*time.Second))
	}
	b.SetBytes(int64(100 * len(message2KB)))
	for b.Loop() {
		md, err := m.OpenMaildrop("u")
		if err != nil {
			b.Fatal(err)
		}
		for i := range md.Messages() {
			rc, err := md.Open(i)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
		md.Close()
	}
}
