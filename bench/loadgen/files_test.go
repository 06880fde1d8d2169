package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The no-protocol baseline stores every message as one file in new/ with
// exactly the generated content, leaves nothing in tmp/, and counts what
// it stored.
func TestRunFilesStoresEveryMessage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "md")
	o := &options{mode: "files", dir: dir, conns: 3, msgs: 7, size: 2048, seed: 1, duration: time.Minute}
	res, err := runFiles(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 21 || res.Errors != 0 {
		t.Fatalf("messages %d errors %d (%s), want 21 and 0", res.Messages, res.Errors, res.FirstError)
	}
	if res.MsgsPerSec <= 0 || res.P50ms <= 0 {
		t.Fatalf("no rate or latency: %+v", res)
	}
	news, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if len(news) != 21 {
		t.Fatalf("%d files in new/, want 21", len(news))
	}
	for _, e := range news {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 2048 || string(b[:6]) != "From: " || string(b[len(b)-2:]) != "\r\n" {
			t.Fatalf("%s: %d octets, starts %q, want a 2048-octet message", e.Name(), len(b), b[:6])
		}
	}
	tmps, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmps) != 0 {
		t.Fatalf("%d files left in tmp/", len(tmps))
	}
}

// A run without -dir, or whose tmp/ is not a directory, is refused before
// any message is counted.
func TestRunFilesRefusesBadDir(t *testing.T) {
	if _, err := runFiles(context.Background(), &options{conns: 1, msgs: 1, size: 2048}); err == nil {
		t.Fatal("no error without -dir")
	}
	dir := filepath.Join(t.TempDir(), "md")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := runFiles(context.Background(), &options{dir: dir, conns: 2, msgs: 3, size: 2048})
	if err == nil {
		t.Fatalf("no error with tmp/ a file: %+v", res)
	}
}

// The duration cap stops the writers and counts what they did not store.
func TestRunFilesDurationCap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "md")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := runFiles(ctx, &options{dir: dir, conns: 2, msgs: 5, size: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 0 || res.Errors != 10 || res.FirstError != "duration cap reached" {
		t.Fatalf("%+v, want 10 errors from the cap", res)
	}
}
