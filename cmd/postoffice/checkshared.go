package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"postoffice/internal/config"
	"postoffice/internal/store/pg"
	"postoffice/internal/store/s3blob"
)

// checkShared checks the engines of the shared store (--store postgres)
// the way the server would use them, each step bounded by --store-timeout:
//
//   - PostgreSQL at --pg-url answers (its version is noted);
//   - the schema version against the one this binary knows: older is a
//     note (the server applies the pending migrations when it starts),
//     newer is a problem (a newer Postoffice migrated the database);
//   - the S3 bucket at --s3-endpoint takes a probe object under check/,
//     gives it back byte for byte, and lets it be deleted.
//
// It returns notes (printed whatever the outcome) and problems, one line
// each.
func checkShared(cfg config.Config) (notes, problems []string) {
	note := func(format string, a ...any) { notes = append(notes, fmt.Sprintf(format, a...)) }
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	step := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), cfg.StoreTimeout)
	}

	ctx, cancel := step()
	pool, err := pg.Connect(ctx, cfg.PGURL)
	cancel()
	if err != nil {
		add("pg-url: cannot connect to PostgreSQL: %v", err)
	} else {
		defer pool.Close()
		var version string
		ctx, cancel := step()
		err := pool.QueryRow(ctx, "SHOW server_version").Scan(&version)
		cancel()
		if err != nil {
			add("pg-url: SHOW server_version: %v", err)
		} else {
			note("pg-url: PostgreSQL %s", version)
		}
		ctx, cancel = step()
		v, err := pg.Version(ctx, pool)
		cancel()
		switch latest := pg.Latest(); {
		case err != nil:
			add("pg-url: %v", err)
		case v > latest:
			add("pg-url: the schema is at version %d, newer than the %d this Postoffice knows: run a Postoffice as new as the one that migrated it", v, latest)
		case v < latest:
			n := latest - v
			plural := "s are"
			if n == 1 {
				plural = " is"
			}
			note("pg-url: schema at version %d: %d migration%s pending, applied at the next start", v, n, plural)
		default:
			note("pg-url: schema at version %d, up to date", v)
		}
	}

	if p := checkBucket(cfg, step); p != "" {
		add("%s", p)
	} else {
		note("s3-bucket: %s at %s: probe object written, read back and deleted", cfg.S3Bucket, cfg.S3Endpoint)
	}
	return notes, problems
}

// checkBucket puts a small probe object into the bucket, reads it back,
// compares and deletes it; it returns a problem, or "".
func checkBucket(cfg config.Config, step func() (context.Context, context.CancelFunc)) string {
	blobs, err := s3blob.New(s3blob.Config{
		Endpoint: cfg.S3Endpoint, Access: cfg.S3AccessKey, Secret: cfg.S3SecretKey,
		Bucket: cfg.S3Bucket, Region: cfg.S3Region, MaxRetries: 2,
	})
	if err != nil {
		return "s3-endpoint: " + err.Error()
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	key := "check/" + hex.EncodeToString(r[:])
	probe := []byte("postoffice check " + key + "\r\n")

	ctx, cancel := step()
	_, err = blobs.Put(ctx, key, bytes.NewReader(probe))
	cancel()
	if err != nil {
		return s3Problem(cfg, "cannot write a probe object", err)
	}
	ctx, cancel = step()
	body, err := blobs.Get(ctx, key, 0, -1)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(body)
		body.Close()
	}
	cancel()
	var problem string
	switch {
	case err != nil:
		problem = s3Problem(cfg, "cannot read back the probe object "+key, err)
	case !bytes.Equal(got, probe):
		problem = fmt.Sprintf("s3-bucket: the probe object %s read back as %d bytes that differ from the %d written", key, len(got), len(probe))
	}
	ctx, cancel = step()
	err = blobs.Delete(ctx, key)
	cancel()
	if err != nil && problem == "" {
		problem = s3Problem(cfg, "cannot delete the probe object "+key, err)
	}
	return problem
}

// s3Problem names the setting an S3 error points at.
func s3Problem(cfg config.Config, what string, err error) string {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchBucket":
			return fmt.Sprintf("s3-bucket: there is no bucket %q at %s (create it first)", cfg.S3Bucket, cfg.S3Endpoint)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Sprintf("s3-access-key: %s refuses the access key or secret key: %s", cfg.S3Endpoint, resp.Message)
		case "AccessDenied":
			return fmt.Sprintf("s3-access-key: %s in bucket %q: access denied: %s", what, cfg.S3Bucket, resp.Message)
		}
	}
	return fmt.Sprintf("s3-endpoint: %s in bucket %q at %s: %v", what, cfg.S3Bucket, cfg.S3Endpoint, err)
}
