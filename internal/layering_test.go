// Package internal_test checks the direction of the arrows between
// Postoffice's packages (docs/design.md, "Map"): which of our packages
// each may import. A new package must be added to the table, and an
// import that breaks a rule fails here with the rule it breaks.
package internal_test

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "postoffice/"

// allowed lists, for every package of ours (relative to the module root),
// the packages of ours its non-test files may import.
var allowed = map[string][]string{
	"cmd/postoffice":               {"internal/server", "internal/config", "internal/auth", "internal/auth/tty", "internal/store", "internal/store/maildir", "internal/store/index", "internal/mailheader", "internal/store/pg", "internal/store/s3blob", "internal/store/shared", "internal/store/migrate"},
	"internal/server":              {"*"}, // the wiring
	"internal/backend":             {"internal/store", "internal/auth", "internal/smtp", "internal/pop3", "internal/imap"},
	"internal/imap":                {"internal/textio", "internal/netpolicy"},
	"internal/smtp":                {"internal/textio", "internal/netpolicy"},
	"internal/pop3":                {"internal/textio", "internal/netpolicy", "internal/mailheader"},
	"internal/textio":              {"internal/netpolicy"},
	"internal/netpolicy":           {},
	"internal/web":                 {"internal/store", "internal/auth", "internal/mailheader", "internal/relay"},
	"internal/relay":               {},
	"internal/metrics":             {},
	"internal/chaos":               {"internal/smtp"},
	"internal/webhook":             {},
	"internal/auth":                {},
	"internal/auth/tty":            {},
	"internal/config":              {"internal/netpolicy"},
	"internal/store":               {},
	"internal/store/maildir":       {"internal/store", "internal/store/index"},
	"internal/store/index":         {"internal/store", "internal/mailheader"},
	"internal/store/pg":            {},
	"internal/store/s3blob":        {},
	"internal/store/shared":        {"internal/store", "internal/store/index", "internal/store/maildir", "internal/store/pg", "internal/store/s3blob"},
	"internal/store/migrate":       {"internal/store", "internal/store/maildir", "internal/store/shared"},
	"internal/testsupport":         {"internal/config", "internal/selfsigned"},
	"internal/testsupport/engines": {},
	"internal/store/storetest":     {"internal/store"},
	"internal/selfsigned":          {},
	"internal/mailheader":          {},
	"bench/loadgen":                {},
	"e2e":                          {"internal/testsupport", "internal/testsupport/engines"},
}

func TestLayering(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "ui" || name == "third_party") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if _, none := err.(*build.NoGoError); none {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if rel == "internal" {
			return nil // this test
		}
		seen[rel] = true
		rules, ok := allowed[rel]
		if !ok {
			t.Errorf("package %s is not in the layering table: add it with what it may import", rel)
			return nil
		}
		imports := pkg.Imports
		if rel == "e2e" {
			imports = append(pkg.TestImports, pkg.XTestImports...) // e2e is tests only
		}
		for _, imp := range imports {
			ours, ok := strings.CutPrefix(imp, module)
			if !ok || slices.Contains(rules, "*") || slices.Contains(rules, ours) {
				continue
			}
			t.Errorf("%s imports %s; it may import only %v of ours", rel, ours, rules)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range allowed {
		if !seen[rel] {
			t.Errorf("layering table names %s, which has no Go files", rel)
		}
	}
	// The protocol engines never see a store, in their tests either: they
	// talk to a backend interface.
	for _, engine := range []string{"internal/smtp", "internal/pop3", "internal/imap"} {
		pkg, err := build.ImportDir(filepath.Join(root, engine), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range append(pkg.Imports, pkg.TestImports...) {
			if strings.HasPrefix(imp, module+"internal/store") {
				t.Errorf("%s imports %s: engines never import a store", engine, imp)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal("the module root was not found:", err)
	}
}
