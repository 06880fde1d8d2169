package e2e

// The recipes of docs/api.md, "Using Postoffice in CI", run as written
// against the binary under test, so that they cannot rot: the shell one
// with bash, curl, jq and python3, the Go one as a test of a module of its
// own in a temporary directory.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docRecipe returns the code block of the given language that follows the
// heading of docs/api.md.
func docRecipe(t *testing.T, heading, lang string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/api.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("docs/api.md: no ```%s block after %q", lang, heading)
	}
	code, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("docs/api.md: the ```%s block after %q does not end", lang, heading)
	}
	return code + "\n"
}

// runRecipe runs cmd with the binary under test first on PATH and as
// $POSTOFFICE, in its own process group (killed when the test times out),
// and returns its output.
func runRecipe(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"POSTOFFICE="+binary)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCIRecipeShell runs the shell recipe: postoffice on free ports, a
// mail over SMTP with curl, the wait by tag, the text and the links.
func TestCIRecipeShell(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (the recipe needs bash, curl, jq and python3)", tool)
		}
	}
	script := docRecipe(t, "### Shell, with curl and jq", "sh")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = t.TempDir()
	out, err := runRecipe(t, cmd)
	if err != nil || !strings.Contains(out, "signup mail OK") {
		t.Fatalf("the shell recipe failed: %v\n%s\nscript:\n%s", err, out, script)
	}
}

// TestCIRecipeGo runs the Go recipe as the test of a module of its own.
func TestCIRecipeGo(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a test binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	dir := t.TempDir()
	src := docRecipe(t, "### A Go test", "go")
	if err := os.WriteFile(filepath.Join(dir, "app_test.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module app\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "-v", ".")
	cmd.Dir = dir
	out, err := runRecipe(t, cmd)
	if err != nil || !strings.Contains(out, "--- PASS: TestSignupMail") {
		t.Fatalf("the Go recipe failed: %v\n%s", err, out)
	}
}
