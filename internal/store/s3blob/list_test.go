package s3blob

import (
	"slices"
	"strings"
	"testing"
	"time"

	"postoffice/internal/testsupport/engines"
)

// List gives the objects under a prefix, in key order, with sizes and
// modification times, and stops when told.
func TestList(t *testing.T) {
	ep, ak, sk, bucket := engines.S3(t)
	c, err := New(Config{Endpoint: ep, Access: ak, Secret: sk, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"msg/b", "msg/a", "other/c"} {
		if _, err := c.Put(ctxT(t), k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	err = c.List(ctxT(t), "msg/", func(o Object) bool {
		keys = append(keys, o.Key)
		if o.Size != int64(len(o.Key)) || time.Since(o.LastModified) > time.Hour {
			t.Errorf("%+v", o)
		}
		return true
	})
	if err != nil || !slices.Equal(keys, []string{"msg/a", "msg/b"}) {
		t.Fatalf("List: %v %v", keys, err)
	}
	n := 0
	if err := c.List(ctxT(t), "", func(Object) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("stopped List: %d %v", n, err)
	}
}
