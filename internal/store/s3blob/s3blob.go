// Package s3blob is the object-store half of the shared store (issue 18):
// message bodies as immutable S3 objects, written as a stream of unknown
// length, read whole or by byte range, deleted by the garbage collector.
// It holds no store logic yet and nothing of the server uses it;
// docs/design.md, "Shared store (issue 18): groundwork", says what it is
// for.
package s3blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinPartSize is the smallest part S3 accepts in a multipart upload (but
// the last).
const MinPartSize = 5 << 20

// DefaultPartSize is Config.PartSize when it is zero.
const DefaultPartSize = 8 << 20

// abortTimeout bounds the abort of a failed multipart upload, which runs
// even when the caller's context is done. An upload whose abort failed is
// left to the bucket's lifecycle rule or the sweeper.
const abortTimeout = 30 * time.Second

// ErrNotFound: no object has the key.
var ErrNotFound = errors.New("s3blob: no such object")

// Config says where the blobs are.
type Config struct {
	// Endpoint is the server's URL: http://host:port or https://host:port.
	Endpoint string
	Access   string
	Secret   string
	Bucket   string
	Region   string // "" is us-east-1
	// PartSize is the threshold above which Put uploads in parts, and
	// the size of a part: the most of a message Put holds in memory. At
	// least MinPartSize; 0 is DefaultPartSize.
	PartSize int64
	// Transport is the HTTP transport (nil: minio-go's default).
	Transport http.RoundTripper
	// MaxRetries is how many times a failed request is tried in all (1:
	// no retry; 0: minio-go's default of 10, with backoff). The store
	// sets it low, so that an unreachable server fails a delivery with a
	// temporary error promptly.
	MaxRetries int
}

// Client stores and reads blobs of one bucket. It is safe for concurrent
// use.
type Client struct {
	core     *minio.Core
	bucket   string
	partSize int64
}

// New returns a client for cfg. It does not contact the server.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("s3blob: endpoint %q is not an http:// or https:// URL of a host (and port)", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	part := cfg.PartSize
	if part == 0 {
		part = DefaultPartSize
	}
	if part < MinPartSize {
		return nil, fmt.Errorf("s3blob: part size %d is below S3's minimum of %d", part, MinPartSize)
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	core, err := minio.NewCore(u.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.Access, cfg.Secret, ""),
		Secure:     u.Scheme == "https",
		Region:     region,
		Transport:  cfg.Transport,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3blob: %w", err)
	}
	return &Client{core: core, bucket: cfg.Bucket, partSize: part}, nil
}

// KeyPrefix starts every key NewKey makes, so that the orphan sweeper
// lists only message blobs.
const KeyPrefix = "msg/"

// NewKey returns a fresh object key for a blob first delivered as message
// id: KeyPrefix, id, '.', 16 random hex digits. It is never derived from
// the content, so that two deliveries of the same bytes never share an
// object that the garbage collector could remove under one of them.
func NewKey(id string) string {
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails on Linux
	return KeyPrefix + id + "." + hex.EncodeToString(r[:])
}

// Put stores r, read to EOF, as the object key and returns its size.
// Up to PartSize it is one PUT; beyond, a multipart upload of PartSize
// parts, aborted (nothing left behind) when r or the server fails. It
// holds at most one part in memory. The object is durable in the server's
// sense when Put returns nil; a key is written once (callers use NewKey).
func (c *Client) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	buf := make([]byte, c.partSize)
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if _, err := c.core.PutObject(ctx, c.bucket, key, bytes.NewReader(buf[:n]), int64(n), "", "", minio.PutObjectOptions{}); err != nil {
			return 0, fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		return int64(n), nil
	}
	if err != nil {
		return 0, fmt.Errorf("s3blob: put %s: reading: %w", key, err)
	}
	return c.putMultipart(ctx, key, r, buf)
}

// putMultipart uploads buf (a full first part) and the rest of r in parts.
func (c *Client) putMultipart(ctx context.Context, key string, r io.Reader, buf []byte) (size int64, err error) {
	uploadID, err := c.core.NewMultipartUpload(ctx, c.bucket, key, minio.PutObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("s3blob: put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			_ = c.core.AbortMultipartUpload(actx, c.bucket, key, uploadID)
		}
	}()
	var parts []minio.CompletePart
	n := len(buf)
	for part := 1; ; part++ {
		p, err := c.core.PutObjectPart(ctx, c.bucket, key, uploadID, part, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		if err != nil {
			return 0, fmt.Errorf("s3blob: put %s part %d: %w", key, part, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: part, ETag: p.ETag})
		size += int64(n)
		var rerr error
		n, rerr = io.ReadFull(r, buf)
		if rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("s3blob: put %s: reading: %w", key, rerr)
		}
	}
	if _, err := c.core.CompleteMultipartUpload(ctx, c.bucket, key, uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return 0, fmt.Errorf("s3blob: put %s: complete: %w", key, err)
	}
	return size, nil
}

// Get returns length bytes of the object key from offset (length < 0: to
// its end), streamed from the server with a ranged GET. ErrNotFound when
// there is no such object.
func (c *Client) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length == 0 {
		return nil, fmt.Errorf("s3blob: get %s: bad range offset %d length %d", key, offset, length)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		if err := opts.SetRange(offset, offset+length-1); err != nil {
			return nil, err
		}
	case offset > 0:
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, err
		}
	}
	body, _, _, err := c.core.GetObject(ctx, c.bucket, key, opts)
	if err != nil {
		return nil, c.wrap("get", key, err)
	}
	return body, nil
}

// Size returns the size of the object key; ErrNotFound when there is
// none.
func (c *Client) Size(ctx context.Context, key string) (int64, error) {
	info, err := c.core.StatObject(ctx, c.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return 0, c.wrap("stat", key, err)
	}
	return info.Size, nil
}

// Delete removes the object key. An object already gone is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := c.core.RemoveObject(ctx, c.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(c.wrap("delete", key, err), ErrNotFound) {
			return nil
		}
		return fmt.Errorf("s3blob: delete %s: %w", key, err)
	}
	return nil
}

func (c *Client) wrap(op, key string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("s3blob: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("s3blob: %s %s: %w", op, key, err)
}

// Object is one entry of a List.
type Object struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// List calls fn with every object whose key starts with prefix, in key
// order, until fn returns false or the listing ends. An error of the
// server ends the listing and is returned.
func (c *Client) List(ctx context.Context, prefix string, fn func(Object) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for info := range c.core.Client.ListObjects(ctx, c.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if info.Err != nil {
			return fmt.Errorf("s3blob: list %s: %w", prefix, info.Err)
		}
		if !fn(Object{Key: info.Key, Size: info.Size, LastModified: info.LastModified}) {
			return nil
		}
	}
	return ctx.Err()
}
