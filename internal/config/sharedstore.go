package config

import (
	"flag"
	"net/url"
	"strings"
)

// The settings of the store: the Maildir under --mailbox-dir (the
// default), or the shared store (--store postgres): PostgreSQL for
// everything mutable, an S3 bucket for message bodies, shared by several
// nodes (docs/operations.md, "Two nodes on a shared store").

func (c *Config) storeFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "store", c.Store, "where mail is kept: maildir (under --mailbox-dir) or postgres (the shared store: --pg-url and --s3-*)")
	fs.StringVar(&c.PGURL, "pg-url", c.PGURL, "PostgreSQL URL of the shared store (postgres://user:password@host:port/db); with --store postgres")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", c.S3Endpoint, "S3 server of the shared store's message bodies: http(s)://host:port")
	fs.StringVar(&c.S3Bucket, "s3-bucket", c.S3Bucket, "S3 bucket of the shared store's message bodies (must exist)")
	fs.StringVar(&c.S3AccessKey, "s3-access-key", c.S3AccessKey, "S3 access key")
	fs.StringVar(&c.S3SecretKey, "s3-secret-key", c.S3SecretKey, "S3 secret key (better given as POSTOFFICE_S3_SECRET_KEY)")
	fs.StringVar(&c.S3Region, "s3-region", c.S3Region, "S3 region")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", c.StoreTimeout, "time limit of every call of the shared store to PostgreSQL or S3")
	fs.Var(sizeValue{&c.BlobCacheSize}, "blob-cache-size", "memory for a cache of message bodies read from S3 (bodies up to 1MiB); 0: no cache")
	fs.DurationVar(&c.SweepGrace, "sweep-grace", c.SweepGrace, "shared store: age after which an S3 object no row refers to (a delivery cut off between its upload and its commit) is removed")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", c.SweepInterval, "shared store: how often the orphan sweeper runs (also once at start)")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "name of this node among the nodes of a shared store (POP3 leases, notifications); empty: host name and a random suffix")
}

// sharedSettings are the settings that only the shared store uses.
var sharedSettings = []string{"pg-url", "s3-endpoint", "s3-bucket", "s3-access-key", "s3-secret-key"}

// Shared reports whether the shared store is configured.
func (c *Config) Shared() bool { return c.Store == "postgres" }

func (c *Config) validateStore(bad func(flagName, format string, a ...any) error) error {
	switch c.Store {
	case "maildir":
		vals := map[string]string{"pg-url": c.PGURL, "s3-endpoint": c.S3Endpoint, "s3-bucket": c.S3Bucket,
			"s3-access-key": c.S3AccessKey, "s3-secret-key": c.S3SecretKey}
		for _, name := range sharedSettings {
			if vals[name] != "" {
				return bad(name, "is a setting of the shared store: it needs --store postgres")
			}
		}
		return nil
	case "postgres":
	default:
		return bad("store", "%q is not maildir or postgres", c.Store)
	}
	if c.PGURL == "" {
		return bad("pg-url", "is required with --store postgres")
	}
	if !strings.HasPrefix(c.PGURL, "postgres://") && !strings.HasPrefix(c.PGURL, "postgresql://") {
		return bad("pg-url", "is not a postgres:// URL")
	}
	u, err := url.Parse(c.S3Endpoint)
	switch {
	case c.S3Endpoint == "":
		return bad("s3-endpoint", "is required with --store postgres")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return bad("s3-endpoint", "%q is not an http:// or https:// URL of a host and port", c.S3Endpoint)
	case c.S3Bucket == "":
		return bad("s3-bucket", "is required with --store postgres")
	case c.StoreTimeout <= 0:
		return bad("store-timeout", "must be positive")
	case c.BlobCacheSize < 0:
		return bad("blob-cache-size", "must not be negative")
	case c.SweepGrace <= 0:
		return bad("sweep-grace", "must be positive")
	case c.SweepInterval <= 0:
		return bad("sweep-interval", "must be positive")
	case strings.ContainsAny(c.NodeName, " \t\r\n"):
		return bad("node-name", "must not contain spaces")
	}
	return nil
}
