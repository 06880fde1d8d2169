package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/auth"
	"postoffice/internal/auth/tty"
)

const userUsage = `Usage:
  postoffice user add    [--users-file PATH] [--password-stdin] [--cost N] NAME
  postoffice user passwd [--users-file PATH] [--password-stdin] [--cost N] NAME
  postoffice user del    [--users-file PATH] NAME
  postoffice user list   [--users-file PATH]

Manages the users file (one "name:bcrypt-hash[:aliases]" line per user; the
format htpasswd -B writes). Edits keep comments and other lines, replace the
file atomically and leave it with mode 0600; a running server picks them up
within a second.

add and passwd ask for the password twice on a terminal, without echo. With
--password-stdin they read one line from standard input instead, without a
prompt (for scripts: postoffice user add --password-stdin bob <password-file).

Flags:
  --users-file PATH   the users file (default $POSTOFFICE_USERS_FILE, or ./users)
  --password-stdin    read the password as one line from standard input
  --cost N            bcrypt cost, 4 to 17 (default 10)

Exit status: 0 done, 1 error, 2 usage.
`

// maxPasswordLine bounds the line read for a password. Passwords longer
// than auth.MaxPasswordLength are refused after reading.
const maxPasswordLine = 1024

// runUser implements "postoffice user add|passwd|del|list". It returns the
// process exit status: 0 on success, 1 on an error (one line on stderr),
// 2 on a usage error. The password is never printed or logged.
func runUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add", "passwd", "del", "list":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, userUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "postoffice user: unknown command %q\n\n%s", sub, userUsage)
		return 2
	}
	prog := "postoffice user " + sub

	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usage errors are reported in one line below
	defaultFile := os.Getenv("POSTOFFICE_USERS_FILE")
	if defaultFile == "" {
		defaultFile = "./users"
	}
	usersFile := fs.String("users-file", defaultFile, "")
	var passwordStdin *bool
	var cost *int
	if sub == "add" || sub == "passwd" {
		passwordStdin = fs.Bool("password-stdin", false, "")
		cost = fs.Int("cost", bcrypt.DefaultCost, "")
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, userUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (see postoffice user help)\n", prog, err)
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s (see postoffice user help)\n", prog, fmt.Sprintf(format, a...))
		return 2
	}
	if *usersFile == "" {
		return usage("--users-file must not be empty")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}

	if sub == "list" {
		if len(pos) != 0 {
			return usage("list takes no arguments")
		}
		names, err := auth.ListUsers(*usersFile)
		if err != nil {
			return fail(err)
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}

	if len(pos) != 1 {
		return usage("want exactly one user NAME")
	}
	name := auth.CanonicalName(pos[0])
	if !auth.ValidName(name) {
		return fail(fmt.Errorf("%q: %w", pos[0], auth.ErrInvalidName))
	}
	if sub == "del" {
		if err := auth.DeleteUser(*usersFile, name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "deleted user %s from %s (the mailbox is kept)\n", name, *usersFile)
		return 0
	}

	if *cost < bcrypt.MinCost || *cost > auth.MaxHashCost {
		return usage("--cost %d is outside %d..%d", *cost, bcrypt.MinCost, auth.MaxHashCost)
	}
	var password string
	if *passwordStdin {
		password, err = readPasswordLine(bufio.NewReader(stdin))
	} else {
		password, err = promptPassword(stdin, stderr, name)
	}
	if errors.Is(err, errNoTerminal) {
		return usage("%v", err)
	}
	if err != nil {
		return fail(err)
	}

	if sub == "add" {
		err = auth.AddUser(*usersFile, name, password, *cost)
	} else {
		err = auth.SetPassword(*usersFile, name, password, *cost)
	}
	if err != nil {
		return fail(err)
	}
	if sub == "add" {
		fmt.Fprintf(stdout, "added user %s to %s\n", name, *usersFile)
	} else {
		fmt.Fprintf(stdout, "changed the password of %s in %s\n", name, *usersFile)
	}
	return 0
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("add bob --password-stdin" as well as "add
// --password-stdin bob"), and returns the positional arguments. After
// "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// errNoTerminal is returned when a password must be prompted for but
// standard input is not a terminal.
var errNoTerminal = errors.New("standard input is not a terminal; pass the password with --password-stdin")

// readPasswordLine reads one line from r, at most maxPasswordLine bytes,
// and returns it without its line end (LF or CRLF).
func readPasswordLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			if len(b) == 0 {
				return "", errors.New("no password on standard input")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if c == '\n' {
			break
		}
		if len(b) >= maxPasswordLine {
			return "", fmt.Errorf("password line longer than %d bytes", maxPasswordLine)
		}
		b = append(b, c)
	}
	s := strings.TrimSuffix(string(b), "\r")
	if s == "" {
		return "", auth.ErrEmptyPassword
	}
	return s, nil
}

// promptPassword asks for a new password twice on the terminal stdin, with
// echo turned off, and returns it when both entries match. Prompts go to
// stderr so that stdout stays clean for scripts.
func promptPassword(stdin io.Reader, stderr io.Writer, name string) (string, error) {
	f, ok := stdin.(*os.File)
	if !ok || !tty.IsTerminal(f.Fd()) {
		return "", errNoTerminal
	}
	restore, err := tty.DisableEcho(f.Fd())
	if err != nil {
		return "", fmt.Errorf("turn off terminal echo: %w", err)
	}
	defer restore()
	// Ctrl-C at the prompt must not leave the terminal without echo.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer func() {
		signal.Stop(sigs)
		close(sigs)
	}()
	go func() {
		if _, ok := <-sigs; ok {
			restore()
			fmt.Fprintln(stderr)
			os.Exit(130)
		}
	}()

	r := bufio.NewReader(f)
	fmt.Fprintf(stderr, "New password for %s: ", name)
	first, err := readPasswordLine(r)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Retype the password: ")
	second, err := readPasswordLine(r)
	if err != nil {
		return "", err
	}
	if first != second {
		return "", errors.New("the passwords do not match")
	}
	return first, nil
}
