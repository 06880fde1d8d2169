package config

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The configuration file.
//
// It is TOML with top-level keys only, and the keys are the flag names
// exactly as written on the command line, with dashes:
//
//	smtp-addr = "0.0.0.0:25"
//	users-file = "/etc/postoffice/users"
//	max-message-size = "50MiB"   # or a number of octets: 52428800
//	domain = ["example.org", "example.net"]   # or "example.org,example.net"
//	smtp-require-auth = true
//	retention-max-age = "720h"
//
// Underscore spellings (smtp_addr) and tables are not accepted: an unknown
// key is an error naming the file and line, as is a value that does not
// parse. Durations and sizes are strings in flag syntax; lists are arrays
// of strings or one comma-separated string.

// configFlag is the flag naming the file; it cannot appear in the file.
const configFlag = "config"

// secretFlags are masked when the configuration is printed.
var secretFlags = map[string]bool{"password": true, "metrics-token": true, "webhook-secret": true, "s3-secret-key": true, "pg-url": true}

// fileValue is one setting read from the file, as flag syntax.
type fileValue struct {
	value string
	line  int
}

// readFile reads the TOML file at path and returns its settings by flag
// name. Each key must be a setting (known reports it), other than config.
func readFile(path string, known func(string) bool) (map[string]fileValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, firstLine(pe.Message))
		}
		return nil, fmt.Errorf("%s: %s", path, firstLine(err.Error()))
	}
	out := make(map[string]fileValue, len(raw))
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		name := k[0]
		if seen[name] {
			continue
		}
		seen[name] = true
		line := keyLine(data, name)
		if !known(name) || name == configFlag {
			hint := ""
			if alt := strings.ReplaceAll(name, "_", "-"); alt != name && known(alt) {
				hint = fmt.Sprintf(" (keys are flag names with dashes: %s)", alt)
			}
			return nil, fmt.Errorf("%s:%d: unknown key %q%s", path, line, name, hint)
		}
		v, err := flagSyntax(raw[name])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", path, line, name, err)
		}
		out[name] = fileValue{value: v, line: line}
	}
	return out, nil
}

// settingError is a Validate error about one setting: "--flag: problem".
type settingError struct{ flag, msg string }

func (e *settingError) Error() string { return "--" + e.flag + ": " + e.msg }

// fileSettings are the settings that took their value from the --config
// file, by flag name.
type fileSettings map[string]fileValue

// locate names the place in the file of a setting error about a setting
// whose value came from the file, as "file:line: flag: problem" (like the
// file's unknown keys and unparsable values); other errors stay as they
// are. A value from a flag or the environment is reported as "--flag".
func (fs fileSettings) locate(path string, err error) error {
	var se *settingError
	if !errors.As(err, &se) {
		return err
	}
	v, ok := fs[se.flag]
	if !ok {
		return err
	}
	return fmt.Errorf("%s:%d: %s: %s", path, v.line, se.flag, se.msg)
}

// flagSyntax turns a TOML value into the text the flag parses.
func flagSyntax(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("array elements must be strings")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", fmt.Errorf("tables are not supported (keys are top-level flag names)")
	default:
		return "", fmt.Errorf("unsupported value type %T (use a string, number, boolean or array of strings)", v)
	}
}

// keyLine returns the line (from 1) where the top-level key name is set
// or opened as a table in a TOML document, or 0 if it cannot be found.
func keyLine(data []byte, name string) int {
	q := regexp.QuoteMeta(name)
	re := regexp.MustCompile(`^\s*(?:\[\[?\s*)?(?:` + q + `|"` + q + `"|'` + q + `')\s*[.=\]]`)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if re.MatchString(sc.Text()) {
			return n
		}
	}
	return 0
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// WriteTOML prints the effective configuration of c as a TOML file that
// Postoffice reads back, like "doveconf -n": only the settings that differ
// from the defaults, unless all is set. Secrets (the password) are masked.
// A comment first says which of the two it is, and when no setting
// differs from its default, says that too: the output is never empty.
func (c *Config) WriteTOML(w io.Writer, all bool) error {
	def := Default()
	defs := map[string]string{}
	def.FlagSet("defaults", io.Discard).VisitAll(func(f *flag.Flag) { defs[f.Name] = f.Value.String() })
	cp := *c
	var flags []*flag.Flag
	cp.FlagSet("config", io.Discard).VisitAll(func(f *flag.Flag) {
		if f.Name != configFlag {
			flags = append(flags, f)
		}
	})
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	bw := bufio.NewWriter(w)
	if all {
		fmt.Fprintln(bw, "# every setting, the defaults included")
	} else {
		fmt.Fprintln(bw, "# the settings that differ from the defaults (--all prints every setting)")
	}
	if c.ConfigFile != "" {
		fmt.Fprintf(bw, "# read from %s\n", c.ConfigFile)
	}
	n := 0
	for _, f := range flags {
		v := f.Value.String()
		if !all && v == defs[f.Name] {
			continue
		}
		fmt.Fprintf(bw, "%s = %s\n", f.Name, tomlValue(f, v))
		n++
	}
	if n == 0 {
		fmt.Fprintln(bw, "# none: every setting has its default value")
	}
	return bw.Flush()
}

// tomlValue formats the flag value v in TOML.
func tomlValue(f *flag.Flag, v string) string {
	if secretFlags[f.Name] {
		if v == "" {
			return `""`
		}
		return `"********"`
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch x := g.Get().(type) {
		case bool:
			return strconv.FormatBool(x)
		case int:
			return strconv.Itoa(x)
		case time.Duration:
			return strconv.Quote(x.String())
		}
	}
	return strconv.Quote(v)
}
