package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport/engines"
)

// TestMigrateCommand runs the built binary: a Maildir to the shared store
// (a dry run first, which moves nothing), then back into an empty
// directory, whose message files are the source's byte for byte; a
// maildrop held by a server makes it refuse.
func TestMigrateCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "postoffice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	src := filepath.Join(t.TempDir(), "mailbox")
	md, err := maildir.New(src, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, body := range []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond\r\n"} {
		if err := md.Deliver(ctx, md.NewID(), []string{"bob"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "bob", "new", "1700000000.M1.host"), []byte("Subject: lf\n\nforeign\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := md.CreateFolder("bob", "Work/Ärger"); err != nil {
		t.Fatal(err)
	}
	md.Close()
	engine := []string{"--pg-url", dsn, "--s3-endpoint", endpoint, "--s3-bucket", bucket,
		"--s3-access-key", access, "--s3-secret-key", secret, "--store-timeout", "10s"}
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"migrate"}, args...), engine...)...)
		cmd.Env = append(os.Environ(), "POSTOFFICE_CONFIG=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("--from", "maildir", "--to", "postgres", "--mailbox-dir", src, "--dry-run")
	if err != nil || !strings.Contains(out, "bob/INBOX: would move 3 of 3 messages") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	dst := filepath.Join(t.TempDir(), "back")
	if out, err := run("--from", "postgres", "--to", "maildir", "--mailbox-dir", dst, "--mailbox", "bob"); err == nil {
		t.Fatalf("the dry run moved bob into the shared store:\n%s", out)
	}
	out, err = run("--from", "maildir", "--to", "postgres", "--mailbox-dir", src)
	if err != nil || !strings.Contains(out, "bob/INBOX: moved 3 of 3 messages") || !strings.Contains(out, "bob/Work/Ärger: moved 0 of 0 messages") {
		t.Fatalf("to postgres: %v\n%s", err, out)
	}
	out, err = run("--from", "maildir", "--to", "postgres", "--mailbox-dir", src, "--dry-run")
	if err != nil || !strings.Contains(out, "bob/INBOX: would move 0 of 3 messages") {
		t.Fatalf("dry run after the move: %v\n%s", err, out)
	}
	out, err = run("--from", "maildir", "--to", "postgres", "--mailbox-dir", src, "--mailbox", "bob")
	if err != nil || !strings.Contains(out, "bob/INBOX: moved 0 of 3 messages") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	out, err = run("--from", "postgres", "--to", "maildir", "--mailbox-dir", dst, "--mailbox", "bob")
	if err != nil || !strings.Contains(out, "bob/INBOX: moved 3 of 3 messages") {
		t.Fatalf("to maildir: %v\n%s", err, out)
	}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(src, "bob", sub))
		for _, e := range ents {
			a, _ := os.ReadFile(filepath.Join(src, "bob", sub, e.Name()))
			b, err := os.ReadFile(filepath.Join(dst, "bob", sub, e.Name()))
			if err != nil || string(a) != string(b) {
				t.Errorf("%s/%s: %v %q vs %q", sub, e.Name(), err, a, b)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "bob", ".Work.&AMQ-rger")); err != nil {
		t.Errorf("folder not moved back: %v", err)
	}
	// A held maildrop: refused, non-zero.
	md, err = maildir.New(src, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	d, err := md.OpenMaildrop("bob")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err = run("--from", "maildir", "--to", "postgres", "--mailbox-dir", src)
	if err == nil || !strings.Contains(out, "locked") {
		t.Fatalf("a locked maildrop: %v\n%s", err, out)
	}
}
