package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"
)

// What the admin commands (topic, produce, consume, group, cluster,
// version) share: common flags, argument parsing, exit statuses, table and
// JSON output, and the progress line.

// Exit statuses of the admin commands.
const (
	exitFailed = 1 // the operation failed
	exitUsage  = 2 // the command line is wrong
)

// exitCodes is the contract scripts may rely on, shown in every admin
// command's help: 0 success; 1 the operation failed (a broker error, a
// missing topic or group, records that could not be produced, fewer records
// than -n before --timeout); 2 a usage error (an unknown flag or command, a
// bad flag value, a missing or extra argument).
const exitCodes = `Exit status: 0 success; 1 the operation failed (broker error, missing topic
or group, failed records); 2 usage error (bad flag or value, missing or extra
argument).`

// usageErr is a usage error: exit status 2.
func usageErr(format string, a ...any) error {
	return cli.Exit(fmt.Sprintf(format, a...), exitUsage)
}

// failErr is a failed operation: exit status 1.
func failErr(format string, a ...any) error {
	return cli.Exit(fmt.Sprintf(format, a...), exitFailed)
}

func brokersFlag() cli.Flag {
	return &cli.StringFlag{Name: "brokers", Value: "localhost:9092", EnvVars: []string{"CHRONIK_BROKERS"},
		Usage: "comma-separated seed brokers (host:port)"}
}

func timeoutFlag(def time.Duration, usage string) cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: def, Usage: usage}
}

func formatFlag(def string, values ...string) cli.Flag {
	return &cli.StringFlag{Name: "format", Value: def, Usage: strings.Join(values, " or ")}
}

// adminFlags are the flags of every command that asks a broker something
// and prints data, the connection security flags included.
func adminFlags(extra ...cli.Flag) []cli.Flag {
	flags := append([]cli.Flag{
		brokersFlag(),
		formatFlag("table", "table", "json"),
		timeoutFlag(30*time.Second, "give up on the brokers after this long"),
	}, extra...)
	return append(flags, clientFlags()...)
}

// outputFormat returns --format, a usage error unless it is one of allowed.
func outputFormat(c *cli.Context, allowed ...string) (string, error) {
	f := c.String("format")
	for _, a := range allowed {
		if f == a {
			return f, nil
		}
	}
	return "", usageErr("format: %q is not one of %s", f, strings.Join(allowed, ", "))
}

// adminCommand fills in what every admin command shares: the exit status
// section of its help.
func adminCommand(cmd *cli.Command) *cli.Command {
	if cmd.Description == "" {
		cmd.Description = exitCodes
	} else {
		cmd.Description += "\n\n" + exitCodes
	}
	return cmd
}

// commandGroup is a command that only holds subcommands: without one it
// prints its help; an unknown one is a usage error (exit 2), where
// urfave/cli would exit 3.
func commandGroup(cmd *cli.Command) *cli.Command {
	cmd.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usageErr("unknown command %q for chronik %s (see chronik %s --help)", c.Args().First(), cmd.Name, cmd.Name)
		}
		return cli.ShowSubcommandHelp(c)
	}
	return cmd
}

// arguments returns the command's positional arguments, between min and max
// of them (max < 0: no limit), described by what in errors. urfave/cli v2
// stops parsing flags at the first argument, so flags written after the
// arguments ("topic create demo --partitions 3") are applied here; "--"
// ends flags.
func arguments(c *cli.Context, what string, min, max int) ([]string, error) {
	var out []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return nil, errHelp
		}
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, usageErr("flag provided but not defined: %s (see --help)", a)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, usageErr("flag needs an argument: %s (see --help)", a)
			}
			i++
			value = args[i]
		}
		if err := c.Set(f.Names()[0], value); err != nil {
			return nil, usageErr("invalid value %q for flag %s: %v", value, a, err)
		}
	}
	switch {
	case len(out) < min:
		return nil, usageErr("missing %s (see --help)", what)
	case max >= 0 && len(out) > max:
		return nil, usageErr("too many arguments: %s takes %s, got %q (see --help)", c.Command.Name, what, out)
	}
	return out, nil
}

// errHelp is returned by arguments for a trailing -h or --help.
var errHelp = errors.New("help requested")

// withArgs wraps an action that takes positional arguments: a trailing
// --help prints the command's help.
func withArgs(what string, min, max int, action func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, err := arguments(c, what, min, max)
		if errors.Is(err, errHelp) {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil
		}
		if err != nil {
			return err
		}
		return action(c, args)
	}
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// repeatedFlag is the value of a flag that may be given many times, each
// occurrence one entry. Unlike cli.StringSliceFlag it does not split values
// at commas, so header and config values may contain them.
type repeatedFlag []string

func (r *repeatedFlag) Set(s string) error { *r = append(*r, s); return nil }
func (r *repeatedFlag) String() string     { return strings.Join(*r, " ") }

func repeated(name, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Value: &repeatedFlag{}, Usage: usage}
}

// repeatedValues returns every value given for a repeatedFlag.
func repeatedValues(c *cli.Context, name string) []string {
	if r, ok := c.Generic(name).(*repeatedFlag); ok {
		return *r
	}
	return nil
}

// keyValues parses k=v pairs (the value may contain '='), a usage error
// naming flag otherwise.
func keyValues(flag string, pairs []string) ([][2]string, error) {
	out := make([][2]string, 0, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageErr("%s: %q is not key=value", flag, p)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns, header first.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(toAny(header)...)
	return t
}

func (t *table) row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, c)
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// joinInt32s renders a replica list as "1,2,3".
func joinInt32s(ns []int32) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// isTerminal reports whether w is a terminal, where a progress line can
// overwrite itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// progress is the single updating line produce, consume and bench show on
// a terminal: every 500 ms, the count so far and the rate over the last
// interval, as a bar towards the goal when the command knows how many
// records it will handle (consume -n, bench --records). On anything else
// it shows nothing, so piped or redirected output stays as it is.
type progress struct {
	mu    sync.Mutex
	count int64

	w    io.Writer
	verb string
	goal int64 // records expected; 0: unknown (no bar)
	stop chan struct{}
	done chan struct{}
}

const progressInterval = 500 * time.Millisecond

// startProgress starts the line on w if w is a terminal; verb is
// "produced" or "consumed". The returned progress counts either way; end
// stops the line.
func startProgress(w io.Writer, verb string) *progress {
	return startProgressBar(w, verb, 0)
}

// startProgressBar is startProgress with a bar towards goal records (none
// when goal is 0 or less).
func startProgressBar(w io.Writer, verb string, goal int64) *progress {
	p := &progress{w: w, verb: verb, goal: max(goal, 0)}
	if !isTerminal(w) {
		return p
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.loop()
	return p
}

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.count += n
	p.mu.Unlock()
}

func (p *progress) total() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\x1b[K") // clear the line for what follows
			return
		case <-t.C:
			last = p.update(last)
		}
	}
}

// update rewrites the line with the count and the rate since the previous
// update, when the count was last; it returns the count.
func (p *progress) update(last int64) int64 {
	n := p.total()
	rate := float64(n-last) / progressInterval.Seconds()
	line := progressLine(p.verb, n, rate)
	if p.goal > 0 {
		line = progressBarLine(p.verb, n, p.goal, rate)
	}
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	return n
}

// progressBarWidth is the bar's width in characters, between the brackets.
const progressBarWidth = 30

// progressBarLine is the text of one update towards a goal:
// "consumed [=======>      ] 2500/10000  25% (3000/s)".
func progressBarLine(verb string, count, goal int64, perSecond float64) string {
	frac := min(float64(count)/float64(goal), 1)
	filled := int(frac * progressBarWidth)
	bar := strings.Repeat("=", filled)
	if filled < progressBarWidth {
		bar += ">" + strings.Repeat(" ", progressBarWidth-filled-1)
	}
	return fmt.Sprintf("%s [%s] %d/%d %3.0f%% (%.0f/s)", verb, bar, count, goal, frac*100, perSecond)
}

// progressLine is the text of one update.
func progressLine(verb string, count int64, perSecond float64) string {
	return fmt.Sprintf("%s %d records (%.0f/s)", verb, count, perSecond)
}

// end stops the line and clears it.
func (p *progress) end() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.stop = nil
}

// reportDeletes prints the outcome of a delete command (topic, group): the
// results as JSON, or a line per deleted name; any failures make the exit
// status 1 with one line naming each.
func reportDeletes[T any](c *cli.Context, format, kind string, out []T, nameErr func(T) (name, errMsg string)) error {
	var failed []string
	for _, d := range out {
		if name, msg := nameErr(d); msg != "" {
			failed = append(failed, fmt.Sprintf("%s: %s", name, msg))
		}
	}
	var err error
	if format == "json" {
		err = writeJSON(c.App.Writer, out)
	} else {
		for _, d := range out {
			if name, msg := nameErr(d); msg == "" {
				fmt.Fprintf(c.App.Writer, "deleted %s %s\n", kind, name)
			}
		}
	}
	if len(failed) > 0 {
		return failErr("delete %s %s", kind, strings.Join(failed, "; "))
	}
	return err
}
