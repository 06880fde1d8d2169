package main

import (
	"testing"

	"postoffice/internal/testsupport/engines"
)

// TestMain runs the tests through engines.Main, which stops the
// PostgreSQL and S3 servers the "check --store postgres" tests start.
func TestMain(m *testing.M) { engines.Main(m) }
