package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"postoffice/internal/store/pg"
	"postoffice/internal/testsupport/engines"
)

// sharedCheckArgs are the arguments of "postoffice check" on the shared
// store at dsn and the S3 bucket.
func sharedCheckArgs(dsn, endpoint, access, secret, bucket string) []string {
	return append([]string{"check", "--store", "postgres",
		"--pg-url", dsn, "--s3-endpoint", endpoint, "--s3-bucket", bucket,
		"--s3-access-key", access, "--s3-secret-key", secret, "--store-timeout", "5s"}, quietArgs...)
}

func migrated(t *testing.T, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pg.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pg.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
}

// lines splits the output of check into its lines.
func lines(out string) []string { return strings.Split(strings.TrimSuffix(out, "\n"), "\n") }

// TestCheckSharedStoreOK: a migrated database and a bucket that takes the
// probe: the server's version and the schema are noted, then "ok"; the
// probe object is gone afterwards.
func TestCheckSharedStoreOK(t *testing.T) {
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	migrated(t, dsn)
	code, out, errs := runCmd(t, "", sharedCheckArgs(dsn, endpoint, access, secret, bucket)...)
	ls := lines(out)
	if code != 0 || ls[len(ls)-1] != "ok" {
		t.Fatalf("exit %d, output %q %q", code, out, errs)
	}
	for _, want := range []string{"pg-url: PostgreSQL ", fmt.Sprintf("pg-url: schema at version %d, up to date", pg.Latest()), "s3-bucket: " + bucket + " at " + endpoint + ": probe object written, read back and deleted"} {
		if !strings.Contains(out, want+"") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mailbox-dir") {
		t.Errorf("the Maildir is checked with --store postgres:\n%s", out)
	}
	// The probe was deleted: the bucket is empty.
	s3 := &engines.S3Server{Endpoint: endpoint, Access: access, Secret: secret, Region: "us-east-1"}
	c, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for obj := range c.ListObjects(ctx, bucket, minioListAll()) {
		t.Errorf("left in the bucket: %q %v", obj.Key, obj.Err)
	}
}

// TestCheckSharedStoreUnmigrated: a database never migrated is not a
// problem: the migrations pending are noted, applied at the next start.
func TestCheckSharedStoreUnmigrated(t *testing.T) {
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	code, out, _ := runCmd(t, "", sharedCheckArgs(dsn, endpoint, access, secret, bucket)...)
	want := fmt.Sprintf("pg-url: schema at version 0: %d migrations are pending, applied at the next start", pg.Latest())
	ls := lines(out)
	if code != 0 || ls[len(ls)-1] != "ok" || !strings.Contains(out, want+"\n") {
		t.Errorf("exit %d, output %q, want a line %q and ok", code, out, want)
	}
}

// TestCheckSharedStoreNewerSchema: a schema newer than the binary's is a
// problem.
func TestCheckSharedStoreNewerSchema(t *testing.T) {
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	migrated(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pg.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	newer := pg.Latest() + 1
	if _, err := pool.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'future', 'x')", newer); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	code, out, _ := runCmd(t, "", sharedCheckArgs(dsn, endpoint, access, secret, bucket)...)
	want := fmt.Sprintf("pg-url: the schema is at version %d, newer than the %d this Postoffice knows", newer, pg.Latest())
	if code != 1 || !strings.Contains(out, want) || strings.Contains(out, "\nok\n") {
		t.Errorf("exit %d, output %q, want a line with %q", code, out, want)
	}
}

// TestCheckSharedStoreProblems breaks one engine setting at a time and
// expects exit 1 and one problem line naming it.
func TestCheckSharedStoreProblems(t *testing.T) {
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	migrated(t, dsn)

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The test cluster trusts its local users, so a wrong password is
	// accepted for "postgres": a role that does not exist stands for bad
	// credentials.
	badUser := *u
	badUser.User = url.UserPassword("nobody", "wrong")
	badDB := *u
	badDB.Path = "/no_such_database"

	stopped := engines.NewS3Server(t)
	stoppedBucket := stopped.CreateBucket(t)
	stopped.Stop(t)
	stoppedPG := engines.NewPostgres(t)
	stoppedPG.Stop(t)

	for _, tc := range []struct {
		name                                  string
		dsn, endpoint, access, secret, bucket string
		want                                  string
	}{
		{"unknown role", badUser.String(), endpoint, access, secret, bucket, `pg-url: cannot connect to PostgreSQL: `},
		{"no such database", badDB.String(), endpoint, access, secret, bucket, `pg-url: cannot connect to PostgreSQL: `},
		{"PostgreSQL stopped", stoppedPG.DSN(), endpoint, access, secret, bucket, `pg-url: cannot connect to PostgreSQL: `},
		{"missing bucket", dsn, endpoint, access, secret, "no-such-bucket", `s3-bucket: there is no bucket "no-such-bucket" at ` + endpoint},
		{"wrong secret key", dsn, endpoint, access, "wrong-secret", bucket, `s3-access-key: ` + endpoint + ` refuses the access key or secret key`},
		{"S3 stopped", dsn, stopped.Endpoint, stopped.Access, stopped.Secret, stoppedBucket, `s3-endpoint: cannot write a probe object in bucket "` + stoppedBucket + `" at ` + stopped.Endpoint},
	} {
		code, out, _ := runCmd(t, "", sharedCheckArgs(tc.dsn, tc.endpoint, tc.access, tc.secret, tc.bucket)...)
		t.Logf("%s: %s", tc.name, out)
		var problems []string
		for _, l := range lines(out) {
			if !strings.HasPrefix(l, "pg-url: PostgreSQL ") && !strings.HasPrefix(l, "pg-url: schema at version") && !strings.Contains(l, "probe object written") {
				problems = append(problems, l)
			}
		}
		if code != 1 || len(problems) != 1 || !strings.Contains(problems[0], tc.want) {
			t.Errorf("%s: exit %d, output %q, want one problem with %q", tc.name, code, out, tc.want)
		}
		if strings.Contains(out, "wrong-secret") || strings.Contains(out, ":wrong@") {
			t.Errorf("%s: the secret is printed: %q", tc.name, out)
		}
	}
}

func minioListAll() minio.ListObjectsOptions { return minio.ListObjectsOptions{Recursive: true} }

// TestCheckSharedStoreHungEngines: a server that accepts connections and
// never answers, as PostgreSQL and as S3: each step gives up at
// --store-timeout with a problem line instead of hanging.
func TestCheckSharedStoreHungEngines(t *testing.T) {
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	migrated(t, dsn)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	addr := silent.Addr().String()
	for _, tc := range []struct {
		name          string
		dsn, endpoint string
		want, notWant string
	}{
		{"PostgreSQL hung", "postgres://postgres@" + addr + "/postgres?sslmode=disable", endpoint, "pg-url: cannot connect to PostgreSQL: ", "s3-endpoint"},
		{"S3 hung", dsn, "http://" + addr, `s3-endpoint: cannot write a probe object in bucket "` + bucket + `" at http://` + addr, "pg-url: cannot"},
	} {
		args := append(sharedCheckArgs(tc.dsn, tc.endpoint, access, secret, bucket), "--store-timeout", "500ms")
		code, out, _ := runCmd(t, "", args...)
		if code != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, tc.notWant) {
			t.Errorf("%s: exit %d, output %q, want a line with %q", tc.name, code, out, tc.want)
		}
	}
}
