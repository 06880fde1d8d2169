package shared_test

import (
	"testing"

	"postoffice/internal/testsupport/engines"
)

func TestMain(m *testing.M) { engines.Main(m) }
