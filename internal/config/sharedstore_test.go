package config

import (
	"io"
	"strings"
	"testing"
)

// The shared store's settings: required together, refused with the
// Maildir, each bad value named.
func TestSharedStoreSettings(t *testing.T) {
	ok := []string{"--store", "postgres", "--pg-url", "postgres://u:p@127.0.0.1:5432/po",
		"--s3-endpoint", "http://127.0.0.1:9000", "--s3-bucket", "mail"}
	c, err := Parse("t", ok, env(map[string]string{"POSTOFFICE_S3_SECRET_KEY": "sk"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Shared() || c.S3SecretKey != "sk" || c.S3Region != "us-east-1" || c.StoreTimeout <= 0 || c.BlobCacheSize != 64<<20 {
		t.Fatalf("parsed %+v", c)
	}
	if d, err := Parse("t", nil, env(nil), io.Discard); err != nil || d.Shared() || d.Store != "maildir" {
		t.Fatalf("default store = %q, %v", d.Store, err)
	}
	with := func(args ...string) []string { return append(append([]string(nil), ok...), args...) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "mysql"}, "--store"},
		{[]string{"--pg-url", "postgres://x/y"}, "needs --store postgres"},
		{[]string{"--s3-bucket", "b"}, "--s3-bucket"},
		{[]string{"--store", "postgres"}, "--pg-url"},
		{with("--pg-url", "mysql://x"), "--pg-url"},
		{with("--s3-endpoint", ""), "--s3-endpoint"},
		{with("--s3-endpoint", "ftp://host:21"), "--s3-endpoint"},
		{with("--s3-endpoint", "http://host:9000/path"), "--s3-endpoint"},
		{with("--s3-bucket", ""), "--s3-bucket"},
		{with("--store-timeout", "0s"), "--store-timeout"},
		{with("--node-name", "a b"), "--node-name"},
	} {
		_, err := Parse("t", tc.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want mention of %q", tc.args, err, tc.want)
		}
	}
}
