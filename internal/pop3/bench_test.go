package pop3

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

func BenchmarkDotStuff(b *testing.B) {
	for _, size := range []int{2 << 10, 1 << 20} {
		// 78-octet lines, a quarter of them beginning with '.'.
		var sb strings.Builder
		for i := 0; sb.Len() < size; i++ {
			if i%4 == 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(strings.Repeat("x", 76) + "\r\n")
		}
		msg := sb.String()
		b.Run(fmt.Sprintf("%dB", len(msg)), func(b *testing.B) {
			w := bufio.NewWriterSize(io.Discard, 32<<10)
			r := strings.NewReader(msg)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(msg)
				if _, err := writeDotStuffed(w, r, -1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRetr retrieves 1000 messages of 2 KB in one pipelined session
// over loopback per iteration.
func BenchmarkRetr(b *testing.B) {
	const n = 1000
	be := newFakeBackend()
	body := strings.Repeat(strings.Repeat("y", 78)+"\r\n", 2048/80)
	m := "Subject: bench\r\n\r\n" + body
	for range n {
		be.add("user", m)
	}
	addr := testsupport.Serve(b, &Server{Backend: be, Logger: slog.New(slog.DiscardHandler)}, ErrServerClosed)
	c := testsupport.Dial(b, addr)
	c.POP3Login("user", "pass")
	var cmds strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&cmds, "RETR %d\r\n", i)
	}
	b.SetBytes(int64(n * len(m)))
	b.ResetTimer()
	for b.Loop() {
		c.SetDeadline(time.Now().Add(time.Minute))
		errc := make(chan error, 1)
		go func() {
			_, err := io.WriteString(c, cmds.String())
			errc <- err
		}()
		for range n {
			readRaw(b, c)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}
