package shared

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/maildir"
	"postoffice/internal/store/s3blob"
)

// maxCached is the largest blob the local cache keeps.
const maxCached = 1 << 20

// blobCache keeps recently read small blobs (they are immutable), least
// recently used out first, within a bound in bytes.
type blobCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	lru   *list.List // of *cached, front most recent
	byKey map[string]*list.Element
	hits  int64
}

type cached struct {
	key  string
	data []byte
}

func newBlobCache(max int64) *blobCache {
	return &blobCache{max: max, lru: list.New(), byKey: make(map[string]*list.Element)}
}

func (c *blobCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	c.hits++
	return e.Value.(*cached).data, true
}

func (c *blobCache) put(key string, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = c.lru.PushFront(&cached{key, data})
	c.bytes += int64(len(data))
	for c.bytes > c.max {
		e := c.lru.Back()
		v := e.Value.(*cached)
		c.lru.Remove(e)
		delete(c.byKey, v.key)
		c.bytes -= int64(len(v.data))
	}
}

// drop forgets key (its blob was deleted).
func (c *blobCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.lru.Remove(e)
		delete(c.byKey, key)
		c.bytes -= int64(len(e.Value.(*cached).data))
	}
}

// readTimeout bounds the reading of a blob of size bytes: Timeout, and
// one more Timeout per MiB.
func (s *Store) readTimeout(size int64) time.Duration {
	return s.opts.Timeout * time.Duration(1+size>>20)
}

// openBlob returns the content of the blob key as the protocols send it:
// its bytes when wire, else their normal form (maildir.WireReader).
// offset and length select a range of the stored bytes (length < 0: to
// the end); a range is only meaningful when wire. A whole small blob is
// served from and kept in the local cache when there is one. The reading
// is bounded in time by the blob's size; Close ends it.
func (s *Store) openBlob(ctx context.Context, key string, wire bool, blobSize, offset, length int64) (io.ReadCloser, error) {
	whole := offset == 0 && length < 0
	if s.cache != nil && whole && blobSize <= maxCached {
		if data, ok := s.cache.get(key); ok {
			return s.wireOf(io.NopCloser(bytes.NewReader(data)), wire, blobSize), nil
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, s.readTimeout(blobSize))
	start := time.Now()
	rc, err := s.blobs.Get(ctx, key, offset, length)
	s.observe("s3", "get", start, err)
	if err != nil {
		cancel()
		if errors.Is(err, s3blob.ErrNotFound) {
			return nil, store.ErrNotFound
		}
		return nil, unavailable("read "+key, err)
	}
	if s.cache != nil && whole && blobSize <= maxCached {
		data, err := io.ReadAll(io.LimitReader(rc, maxCached+1))
		rc.Close()
		cancel()
		if err != nil {
			if errors.Is(err, s3blob.ErrNotFound) || isNoSuchKey(err) {
				return nil, store.ErrNotFound
			}
			return nil, unavailable("read "+key, err)
		}
		if int64(len(data)) == blobSize {
			s.cache.put(key, data)
		}
		return s.wireOf(io.NopCloser(bytes.NewReader(data)), wire, blobSize), nil
	}
	return s.wireOf(&cancelCloser{rc, cancel}, wire, blobSize), nil
}

// isNoSuchKey reports whether err, from reading a GET's body, says there
// is no such object (minio-go reports it at the first read).
func isNoSuchKey(err error) bool {
	return err != nil && (bytes.Contains([]byte(err.Error()), []byte("does not exist")) || bytes.Contains([]byte(err.Error()), []byte("NoSuchKey")))
}

type cancelCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelCloser) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func (s *Store) wireOf(rc io.ReadCloser, wire bool, blobSize int64) io.ReadCloser {
	if wire {
		return rc
	}
	return struct {
		io.Reader
		io.Closer
	}{maildir.WireReader(rc, blobSize), rc}
}

// putBlob stores r (to EOF) as a new object for message id and returns
// its key and size.
func (s *Store) putBlob(ctx context.Context, id string, r io.Reader) (key string, size int64, err error) {
	key = s3blob.NewKey(id)
	start := time.Now()
	size, err = s.blobs.Put(ctx, key, r)
	s.observe("s3", "put", start, err)
	return key, size, err
}

// deleteBlob removes the object key (its row is gone or never was).
func (s *Store) deleteBlob(ctx context.Context, key string) error {
	s.cache.drop(key)
	ctx, cancel := s.call(ctx)
	defer cancel()
	start := time.Now()
	err := s.blobs.Delete(ctx, key)
	s.observe("s3", "delete", start, err)
	return err
}
