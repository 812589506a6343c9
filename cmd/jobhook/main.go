// Command jobhook runs jobhook, the job runner for serverless Go backends.
//
//	jobhook serve                      run the HTTP API (QStash, real or in-process, drives the worker)
//	jobhook migrate up|down|status     manage the database schema
//	jobhook token --user ID [--ttl D]  print a development API token for a user
//	jobhook schedules sync|list        manage QStash schedules from qstash.schedules.json
//	jobhook trigger [--wait ID]        call the worker endpoint, optionally wait for a job
//	jobhook qstash-dev [--addr A]      run the in-process QStash on its own
//	jobhook keygen                     print a new JOBS_ENCRYPTION_KEY entry
//	jobhook load [--jobs N]            create jobs on a local server and measure
//	jobhook jobs list|get|retry|cancel operate on jobs through the API (ADMIN_TOKEN)
//	jobhook version                    print the version and VCS revision
//
// Settings come from the environment and an optional .env file; each
// command's --help lists the ones it reads, and README's configuration
// table lists them all.
//
// Exit status: 0 success, 1 failure (for trigger --wait: the job failed,
// was cancelled or did not finish in time; for jobs: the API refused a
// call, or a job of a bulk retry could not be retried), 2 a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/jobhook/jobhook/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a command line that cannot run: an unknown command or
// flag, a missing or unexpected argument, a bad flag value. It exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errShowUsage is a usage error whose help has already been printed.
var errShowUsage = errors.New("usage shown")

// run executes one command line and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetOut(stdout)
	root.SetErr(stderr)
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	var ue *usageError
	switch {
	case errors.Is(err, errShowUsage):
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s\nusage: %s\nRun '%s --help' for its flags and settings.\n", cmd.CommandPath(), ue.msg, cmd.UseLine(), cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return exitFailure
	}
}

// newRoot builds the command tree. A fresh tree per run keeps flag values
// from leaking between runs (tests run many).
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "jobhook <command>",
		Short: "a job runner for serverless Go backends",
		Long: `jobhook — a job runner for serverless Go backends.

Settings are environment variables (a .env file is read when present);
with none at all, serve runs on SQLite, an in-process Redis and an
in-process QStash that calls the server's own /api/workers. Each
command's --help lists the settings it reads.

Build the binary with: go build -o jobhook ./cmd/jobhook (or go install ./cmd/jobhook).`,
		Args: func(cmd *cobra.Command, args []string) error {
			return unknownCommand(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return errShowUsage
		},
		SilenceErrors:              true,
		SilenceUsage:               true,
		SuggestionsMinimumDistance: suggestionDistance,
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{msg: err.Error() + suggestFlag(cmd, err)}
	})
	help := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		help(cmd, args)
		fmt.Fprint(cmd.OutOrStdout(), settingsHelp(cmd))
	})
	root.AddCommand(
		serveCmd(),
		migrateCmd(),
		tokenCmd(),
		schedulesCmd(),
		triggerCmd(),
		qstashDevCmd(),
		keygenCmd(),
		loadCmd(),
		jobsCmd(),
		apikeysCmd(),
		versionCmd(),
	)
	return root
}

// settingsKey is the annotation listing the settings a command reads,
// comma-separated; "-" for none, "*" for every setting.
const settingsKey = "jobhook.settings"

// reads records the settings cmd reads, for its help.
func reads(cmd *cobra.Command, names ...string) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	v := strings.Join(names, ",")
	if len(names) == 0 {
		v = "-"
	}
	cmd.Annotations[settingsKey] = v
	return cmd
}

// readsAll records that cmd reads every setting.
func readsAll(cmd *cobra.Command) *cobra.Command {
	reads(cmd)
	cmd.Annotations[settingsKey] = "*"
	return cmd
}

// settingsOf returns the settings a command reads.
func settingsOf(cmd *cobra.Command) []config.Setting {
	v := cmd.Annotations[settingsKey]
	switch v {
	case "", "-":
		return nil
	case "*":
		return config.Settings()
	}
	var out []config.Setting
	for _, name := range strings.Split(v, ",") {
		s, ok := config.Lookup(name)
		if !ok {
			s, ok = cliSettings[name]
		}
		if !ok {
			panic("jobhook: " + cmd.Name() + " reads unknown setting " + name)
		}
		out = append(out, s)
	}
	return out
}

// cliSettings are the settings only the command line reads, to reach a
// server: the server has none of them, so they are not config's (README
// lists them under Commands).
var cliSettings = map[string]config.Setting{
	"JOBHOOK_URL": {Name: "JOBHOOK_URL", Default: defaultJobhookURL, Summary: "the base URL of the server the jobs commands call"},
}

// settingsHelp is the help's list of the settings the command reads.
func settingsHelp(cmd *cobra.Command) string {
	v := cmd.Annotations[settingsKey]
	if v == "" {
		return "" // a group: its commands list theirs
	}
	if v == "-" {
		return "\nSettings:\n  none: this command reads no environment variables.\n"
	}
	var b strings.Builder
	b.WriteString("\nSettings (environment variables; a .env file is read when present):\n")
	list := settingsOf(cmd)
	width := 0
	for _, s := range list {
		width = max(width, len(s.Name))
	}
	for _, s := range list {
		fmt.Fprintf(&b, "  %-*s  %s", width, s.Name, s.Summary)
		if s.Default != "" {
			fmt.Fprintf(&b, " (default: %s)", s.Default)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// noArgs refuses arguments, naming the first.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q: %s takes no arguments", args[0], cmd.CommandPath())
	}
	return nil
}

// unknownCommand answers a group called with an argument that is none of
// its commands, with suggestions.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
	}
	return &usageError{msg: msg}
}

// suggestionDistance is how many edits away a typed command or flag may
// be from a real one to be suggested: "serv" → serve, "stauts" → status.
const suggestionDistance = 2

// group is a command whose work is done by its subcommands.
func group(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.Args = unknownCommand
	cmd.SuggestionsMinimumDistance = suggestionDistance
	cmd.DisableFlagsInUseLine = true
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usagef("a command is needed: %s", strings.Join(names, ", "))
	}
	cmd.AddCommand(subs...)
	return cmd
}

// suggestFlag adds "; did you mean --wait?" to an unknown flag's error.
func suggestFlag(cmd *cobra.Command, err error) string {
	msg := err.Error()
	const prefix = "unknown flag: --"
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	typed := strings.TrimPrefix(msg, prefix)
	var near []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && (distance(typed, f.Name) <= suggestionDistance || strings.HasPrefix(f.Name, typed)) {
			near = append(near, "--"+f.Name)
		}
	})
	if len(near) == 0 {
		return ""
	}
	sort.Strings(near)
	return "; did you mean " + strings.Join(near, " or ") + "?"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
