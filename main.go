// Command chronik is a Kafka-compatible streaming broker.
//
//	chronik serve            run a broker (see chronik serve --help)
//	chronik bench produce    measure produce throughput/latency against any broker
//	chronik bench consume    measure consume throughput against any broker
//	chronik topic ...        create, list, describe, delete, alter-config topics
//	chronik produce TOPIC    produce lines of standard input
//	chronik consume TOPIC    print records (text or JSON lines)
//	chronik group ...        list, describe (with lag), seek, delete groups
//	chronik cluster info     cluster id, controller and brokers
//	chronik repair           cut damaged partition logs (broker stopped)
//	chronik version          version, commit and Go version
//	chronik completion SHELL shell completion script (bash, zsh, fish)
//	chronik man              the manual page (roff)
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without os.Exit, so tests can drive the CLI in-process.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.Run(args); err != nil {
		code := 1
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "chronik: %s\n", msg)
		}
		return code
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	usageError := func(c *cli.Context, err error, isSubcommand bool) error {
		return cli.Exit(fmt.Sprintf("%v (see --help)", err), 2)
	}
	app := &cli.App{
		Name:                 "chronik",
		Usage:                "a Kafka-compatible streaming broker",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// Bad flags are usage errors: exit status 2, like most Unix tools.
		OnUsageError:   usageError,
		ExitErrHandler: func(*cli.Context, error) {}, // run() prints and exits
		// No command, or an unknown one: help, or a usage error (exit 2).
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("unknown command %q (see --help)", c.Args().First()), 2)
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			serveCommand(),
			topicCommand(),
			produceCommand(),
			consumeCommand(),
			groupCommand(),
			aclCommand(),
			txnCommand(),
			clusterCommand(),
			userCommand(),
			benchCommand(),
			repairCommand(),
			versionCommand(),
			completionCommand(),
			manCommand(),
			docsCommand(),
		},
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = usageError
			setUsage(cmd.Subcommands)
		}
	}
	setUsage(app.Commands)
	return app
}

// newLogger builds the process logger from --log-level and --log-format.
// auto is console on a terminal (someone reading) and JSON otherwise (a
// journal or a file, for machines to parse).
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log-level: %q is not one of trace, debug, info, warn, error", level)
	}
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "console"
		}
	}
	switch format {
	case "json":
	case "console", "text":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Nop(), fmt.Errorf("log-format: %q is not one of auto, json, console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
