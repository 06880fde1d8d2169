package engines_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"postoffice/internal/testsupport/engines"
)

func TestMain(m *testing.M) { engines.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(ctx(t), "SHOW "+setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Each call gets its own empty database of one durable cluster.
func TestPostgres(t *testing.T) {
	a, b := engines.Postgres(t), engines.Postgres(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	for _, s := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if v := show(t, ca, s); v != "on" {
			t.Errorf("%s = %s, want on", s, v)
		}
	}
	if _, err := ca.Exec(ctx(t), "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx(t), "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of database a seen in b: n=%d err=%v", n, err)
	}
}

// An immediate stop cuts connections, and what was committed before it is
// there after Start, on the same DSN.
func TestPostgresStopStart(t *testing.T) {
	c := engines.NewPostgres(t)
	dsn := c.CreateDatabase(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx(t), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	if _, err := conn.Exec(ctx(t), "SELECT 1"); err == nil {
		t.Fatal("a connection survived the stop")
	}
	if _, err := pgx.Connect(ctx(t), dsn); err == nil {
		t.Fatal("connected to a stopped cluster")
	}
	c.Start(t)
	var x int
	if err := connect(t, dsn).QueryRow(ctx(t), "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after restart: x=%d err=%v", x, err)
	}
}

func s3client(t *testing.T, endpoint, access, secret string) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func put(t *testing.T, c *minio.Client, bucket, key, body string) error {
	t.Helper()
	_, err := c.PutObject(ctx(t), bucket, key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
	return err
}

func get(t *testing.T, c *minio.Client, bucket, key string) (string, error) {
	t.Helper()
	o, err := c.GetObject(ctx(t), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "", err
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	return string(b), err
}

// Each call gets its own empty bucket of one server, with working keys.
func TestS3(t *testing.T) {
	ep, ak, sk, b1 := engines.S3(t)
	_, _, _, b2 := engines.S3(t)
	if b1 == b2 {
		t.Fatalf("two calls returned the same bucket %s", b1)
	}
	c := s3client(t, ep, ak, sk)
	if err := put(t, c, b1, "k", "hello"); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, c, b1, "k"); err != nil || got != "hello" {
		t.Fatalf("get = %q, %v", got, err)
	}
	if _, err := get(t, c, b2, "k"); err == nil {
		t.Fatal("object of bucket 1 found in bucket 2")
	}
	if err := put(t, s3client(t, ep, ak, "wrong"), b1, "k2", "x"); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
}

// A stopped S3 server refuses requests; started again, it has the objects.
func TestS3StopStart(t *testing.T) {
	s := engines.NewS3Server(t)
	bucket := s.CreateBucket(t)
	c := s3client(t, s.Endpoint, s.Access, s.Secret)
	if err := put(t, c, bucket, "k", "kept"); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if _, err := get(t, c, bucket, "k"); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Start(t)
	if got, err := get(t, c, bucket, "k"); err != nil || got != "kept" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

// A missing engine skips, with the reason, unless POSTOFFICE_REQUIRE_ENGINES
// is 1: then it fails. Runs this test binary again with the binaries
// pointed at nothing.
func TestMissingEngine(t *testing.T) {
	if os.Getenv("ENGINES_HELPER") == "pg" {
		engines.Postgres(t)
		return
	}
	if os.Getenv("ENGINES_HELPER") == "s3" {
		engines.S3(t)
		return
	}
	none := t.TempDir()
	for _, tc := range []struct{ helper, env, want string }{
		{"pg", engines.PgBinEnv, "holds no initdb and postgres"},
		{"s3", engines.VersitygwEnv, "no such file"},
	} {
		for _, require := range []string{"", "1"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingEngine$", "-test.v")
			cmd.Env = append(os.Environ(), "ENGINES_HELPER="+tc.helper, tc.env+"="+none+"/x", engines.RequireEnv+"="+require)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			text := out.String()
			if !strings.Contains(text, tc.want) {
				t.Errorf("%s require=%q: the reason %q is not in the output:\n%s", tc.helper, require, tc.want, text)
			}
			if require == "1" {
				if err == nil || !strings.Contains(text, "--- FAIL") {
					t.Errorf("%s with %s=1: not a failure (err %v):\n%s", tc.helper, engines.RequireEnv, err, text)
				}
			} else if err != nil || !strings.Contains(text, "--- SKIP") {
				t.Errorf("%s without %s: not a skip (err %v):\n%s", tc.helper, engines.RequireEnv, err, text)
			}
		}
	}
}
