package index_test

import (
	"fmt"
	"os"
	"path/filepath"
	"postoffice/internal/store"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkIndex100k measures the web inbox's listing over a mailbox of
// 100,000 messages (about 1 KiB each, written straight into new/): the
// first listing (the index is built from the files), a warm first page,
// a header search and a bounded body search. It reports the peak RSS of
// the process (VmHWM) after each. Run with:
//
//	go test -run '^$' -bench Index100k -benchtime 20x ./internal/store/index
func BenchmarkIndex100k(b *testing.B) {
	n := 100_000
	if v := os.Getenv("INDEX_BENCH_MESSAGES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	m, x := newIndex(b)
	if _, err := m.Usage("user"); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(m.Root(), "user", "new")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 14)
	for i := range n {
		id := store.NewID()
		msg := fmt.Sprintf("Return-Path: <s%d@example.org>\r\nFrom: Sender %d <s%d@example.org>\r\nTo: user@example.com\r\n"+
			"Subject: Message number %d\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\n\r\n%s", i%1000, i%1000, i%1000, i, body)
		if i == n/2 {
			msg += "needle in the haystack\r\n"
		}
		if err := os.WriteFile(filepath.Join(dir, id+".eml"), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	rss := func(b *testing.B) {
		if kb := peakRSSKiB(); kb > 0 {
			b.ReportMetric(float64(kb)/1024, "peakRSS-MiB")
		}
	}
	b.Run("first-list-cold", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := x.Reindex("user", nil); err != nil {
				b.Fatal(err)
			}
		}
		rss(b)
	})
	b.Run("first-page", func(b *testing.B) {
		for b.Loop() {
			res, err := x.List("user", store.Query{}, 0, 50)
			if err != nil || res.Total != n || len(res.Messages) != 50 {
				b.Fatal(res.Total, err)
			}
		}
		rss(b)
	})
	b.Run("search-subject", func(b *testing.B) {
		q, _ := store.ParseQuery(fmt.Sprintf("subject:%q", fmt.Sprintf("number %d", n/2)))
		for b.Loop() {
			res, err := x.List("user", q, 0, 50)
			if err != nil || res.Total < 1 {
				b.Fatal(res.Total, err)
			}
		}
		rss(b)
	})
	b.Run("search-from-word", func(b *testing.B) {
		q, _ := store.ParseQuery("from:s999@")
		for b.Loop() {
			res, err := x.List("user", q, 0, 50)
			if err != nil || res.Total != n/1000 {
				b.Fatal(res.Total, err)
			}
		}
		rss(b)
	})
	b.Run("search-text", func(b *testing.B) {
		q, _ := store.ParseQuery("text:needle")
		for b.Loop() {
			res, err := x.List("user", q, 0, 50)
			if err != nil || res.Total != 1 {
				b.Fatal(res.Total, err)
			}
		}
		rss(b)
	})
}

// peakRSSKiB returns the peak resident set size of the process (Linux
// VmHWM), or 0.
func peakRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
