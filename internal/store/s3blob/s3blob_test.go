package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"postoffice/internal/testsupport/engines"
)

func TestMain(m *testing.M) { engines.Main(m) }

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	return c
}

func client(t *testing.T) *Client {
	t.Helper()
	ep, ak, sk, bucket := engines.S3(t)
	c, err := New(Config{Endpoint: ep, Access: ak, Secret: sk, Bucket: bucket, PartSize: MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gen yields n pseudo-random bytes from seed without holding them, and
// hides its length (no Len or Size method): the stream of unknown length
// an SMTP DATA is.
type gen struct {
	r *rand.ChaCha8
	n int64
}

func newGen(seed byte, n int64) *gen {
	var s [32]byte
	s[0] = seed
	return &gen{r: rand.NewChaCha8(s), n: n}
}

func (g *gen) Read(p []byte) (int, error) {
	if g.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	n, _ := g.r.Read(p)
	g.n -= int64(n)
	return n, nil
}

func read(t *testing.T, c *Client, key string, off, n int64) []byte {
	t.Helper()
	rc, err := c.Get(ctxT(t), key, off, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func etag(t *testing.T, c *Client, key string) string {
	t.Helper()
	info, err := c.core.StatObject(ctxT(t), c.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info.ETag
}

// A message below the part size is one PUT; read back whole and by range.
func TestPutGetSmall(t *testing.T) {
	c := client(t)
	body := strings.Repeat("Subject: hi\r\n\r\nline\r\n", 100)
	key := NewKey("18a2b3c4d5e6f708.9f3e0a11.0000002a")
	n, err := c.Put(ctxT(t), key, io.MultiReader(strings.NewReader(body)))
	if err != nil || n != int64(len(body)) {
		t.Fatalf("Put = %d, %v; want %d", n, err, len(body))
	}
	if got := read(t, c, key, 0, -1); string(got) != body {
		t.Fatalf("Get whole: %d bytes, differ", len(got))
	}
	if got := read(t, c, key, 13, 6); string(got) != body[13:19] {
		t.Fatalf("Get range = %q, want %q", got, body[13:19])
	}
	if got := read(t, c, key, int64(len(body))-4, -1); string(got) != body[len(body)-4:] {
		t.Fatalf("Get tail = %q", got)
	}
	if e := etag(t, c, key); strings.Contains(e, "-") {
		t.Errorf("ETag %s is a multipart upload's; want one PUT", e)
	}
	if size, err := c.Size(ctxT(t), key); err != nil || size != int64(len(body)) {
		t.Errorf("Size = %d, %v", size, err)
	}
}

// 10 MB of unknown length streams up in parts (the ETag says how many)
// and reads back byte-exactly, whole and by range.
func TestPutStream10MB(t *testing.T) {
	c := client(t)
	const size = 10_000_000
	key := NewKey("big")
	n, err := c.Put(ctxT(t), key, newGen(1, size))
	if err != nil || n != size {
		t.Fatalf("Put = %d, %v", n, err)
	}
	if e := etag(t, c, key); !strings.HasSuffix(strings.Trim(e, `"`), "-2") {
		t.Errorf("ETag %s: want a multipart upload of 2 parts", e)
	}
	want := sha256.New()
	io.Copy(want, newGen(1, size))
	rc, err := c.Get(ctxT(t), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	if m, err := io.Copy(got, rc); err != nil || m != size {
		t.Fatalf("read back %d bytes, %v", m, err)
	}
	rc.Close()
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the object read back differs from what was put")
	}
	// A range across the part boundary.
	const off, length = MinPartSize - 50, 100
	all, _ := io.ReadAll(newGen(1, off+length))
	if got := read(t, c, key, off, length); !bytes.Equal(got, all[off:]) {
		t.Fatal("ranged read across the part boundary differs")
	}
}

// failAfter yields what r yields, then fails instead of ending.
type failAfter struct {
	r io.Reader
}

var errClientGone = errors.New("client gone")

func (f failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errClientGone
	}
	return n, err
}

// A stream that fails after the first part leaves no object and no
// unfinished upload.
func TestPutReadErrorLeavesNothing(t *testing.T) {
	c := client(t)
	key := NewKey("cut")
	_, err := c.Put(ctxT(t), key, failAfter{newGen(2, MinPartSize+1000)})
	if !errors.Is(err, errClientGone) {
		t.Fatalf("Put err = %v, want the reader's error", err)
	}
	if _, err := c.Size(ctxT(t), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("object after a failed Put: %v", err)
	}
	for u := range c.core.ListIncompleteUploads(ctxT(t), c.bucket, key, true) {
		t.Errorf("unfinished upload left: %+v", u)
	}
	// Below the part size: the error comes before any request.
	if _, err := c.Put(ctxT(t), key, failAfter{strings.NewReader("abc")}); !errors.Is(err, errClientGone) {
		t.Fatalf("small Put err = %v", err)
	}
}

func TestDelete(t *testing.T) {
	c := client(t)
	key := NewKey("del")
	if _, err := c.Put(ctxT(t), key, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctxT(t), key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctxT(t), key, 0, -1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctxT(t), key); err != nil {
		t.Fatalf("Delete of a deleted object: %v", err)
	}
}

func TestNewKey(t *testing.T) {
	id := "18a2b3c4d5e6f708.9f3e0a11.0000002a"
	a, b := NewKey(id), NewKey(id)
	if a == b || !strings.HasPrefix(a, KeyPrefix+id+".") || len(a) != len(KeyPrefix)+len(id)+17 {
		t.Fatalf("NewKey: %q, %q", a, b)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no scheme":  {Endpoint: "127.0.0.1:9000", Bucket: "b"},
		"with path":  {Endpoint: "http://127.0.0.1:9000/x", Bucket: "b"},
		"no bucket":  {Endpoint: "http://127.0.0.1:9000"},
		"small part": {Endpoint: "http://127.0.0.1:9000", Bucket: "b", PartSize: 1 << 20},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := New(Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "k", -1, 5); err == nil {
		t.Error("a negative offset was accepted")
	}
}

// A stopped server fails Put, Get and Delete with an error, promptly with
// MaxRetries 1; started again, the blobs put before are there.
func TestServerDown(t *testing.T) {
	s := engines.NewS3Server(t)
	c, err := New(Config{Endpoint: s.Endpoint, Access: s.Access, Secret: s.Secret, Bucket: s.CreateBucket(t), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	key := NewKey("down")
	if _, err := c.Put(ctxT(t), key, strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if _, err := c.Put(ctxT(t), NewKey("lost"), strings.NewReader("x")); err == nil {
		t.Error("Put to a stopped server succeeded")
	}
	if _, err := c.Get(ctxT(t), key, 0, -1); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get from a stopped server: %v, want an error that is not ErrNotFound", err)
	}
	if err := c.Delete(ctxT(t), key); err == nil {
		t.Error("Delete on a stopped server succeeded")
	}
	s.Start(t)
	if got := read(t, c, key, 0, -1); string(got) != "kept" {
		t.Fatalf("after restart: %q", got)
	}
}
