package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"postoffice/internal/config"
)

// runConfig implements "postoffice config": it prints the effective
// configuration, from the same flags, environment and --config file as the
// server, as TOML that --config reads back. Like "doveconf -n" it shows the
// settings that differ from the defaults; --all shows every one. The
// password is masked. Exit status: 0, or 2 when the configuration is
// invalid (the error on stderr).
func runConfig(args []string, stdout, stderr io.Writer) int {
	var all bool
	cfg, rest, err := config.ParseArgs("postoffice config", args, nil, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&all, "all", false, "print every setting, not only those that differ from the defaults")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected argument %q", rest[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "postoffice config: %v\n", err)
		return 2
	}
	if err := cfg.WriteTOML(stdout, all); err != nil {
		fmt.Fprintf(stderr, "postoffice config: %v\n", err)
		return 1
	}
	return 0
}
