package main

import (
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/testenv"
)

// commands returns every command of the tree but the root and cobra's own
// (help, completion), with its path from the root ("schedules sync").
func commands(t *testing.T) map[string]*cobra.Command {
	t.Helper()
	out := map[string]*cobra.Command{}
	var walk func(prefix string, c *cobra.Command)
	walk = func(prefix string, c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			path := strings.TrimSpace(prefix + " " + sub.Name())
			out[path] = sub
			walk(path, sub)
		}
	}
	walk("", newRoot())
	require.Greater(t, len(out), 10)
	return out
}

// TestEveryCommandHasHelp: each command's --help goes to stdout, once,
// exits 0, and lists the command's own flags and the settings it reads.
func TestEveryCommandHasHelp(t *testing.T) {
	for path, c := range commands(t) {
		t.Run(path, func(t *testing.T) {
			code, out, errOut := runCmd(t, append(strings.Fields(path), "--help")...)
			require.Equal(t, 0, code, errOut)
			require.Empty(t, errOut)
			require.Equal(t, 1, strings.Count(out, "Usage:"), "help printed once:\n%s", out)
			require.NotEmpty(t, c.Short)
			c.LocalFlags().VisitAll(func(f *pflag.Flag) {
				require.Contains(t, out, "--"+f.Name, "help lists --%s", f.Name)
			})
			if c.HasAvailableSubCommands() {
				for _, sub := range c.Commands() {
					require.Contains(t, out, sub.Name())
				}
				return
			}
			require.Contains(t, out, "\nSettings", "help lists the settings read")
			for _, s := range settingsOf(c) {
				require.Contains(t, out, "  "+s.Name+" ", "help lists %s", s.Name)
			}
		})
	}
	// The settings lists are each command's own.
	_, out, _ := runCmd(t, "schedules", "list", "--help")
	require.NotContains(t, out, "--dry-run", "list has none of sync's flags")
	require.NotContains(t, out, "QSTASH_CURRENT_SIGNING_KEY")
	_, out, _ = runCmd(t, "migrate", "up", "--help")
	require.Contains(t, out, "DATABASE_URL")
	require.NotContains(t, out, "WORKER_SECRET")
	_, out, _ = runCmd(t, "serve", "--help")
	require.Contains(t, out, "DRAIN_BUDGET ")
	require.Contains(t, out, "(default: 4m)")
}

// TestKeygenHelpIsHelp: --help prints help, not a key.
func TestKeygenHelpIsHelp(t *testing.T) {
	key := regexp.MustCompile(`(?m)^[A-Za-z0-9_-]+:[A-Za-z0-9+/=]{40,}$`)
	code, out, _ := runCmd(t, "keygen", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage:")
	require.False(t, key.MatchString(out), out)
	code, out, _ = runCmd(t, "keygen")
	require.Equal(t, 0, code)
	require.True(t, key.MatchString(strings.TrimSpace(out)), out)
}

// TestTyposAreSuggested: a near miss names the command or flag meant.
func TestTyposAreSuggested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serv"}, `unknown command "serv"; did you mean serve?`},
		{[]string{"migrate", "stauts"}, `did you mean status?`},
		{[]string{"schedules", "lst"}, `unknown command "lst"; did you mean list?`},
		{[]string{"trigger", "--wiat", "3"}, `unknown flag: --wiat; did you mean --wait?`},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		require.Equal(t, 2, code, errOut)
		require.Contains(t, errOut, tc.want)
		require.Contains(t, errOut, "usage: jobhook")
	}
}

// TestUnexpectedArgumentsAreErrors: no command ignores an argument, and
// none reads its configuration or does its work first.
func TestUnexpectedArgumentsAreErrors(t *testing.T) {
	t.Setenv("QSTASH_TOKEN", "")
	t.Setenv("PORT", "not-a-port") // would fail any command that loaded it
	for path, c := range commands(t) {
		if c.HasAvailableSubCommands() {
			continue
		}
		code, out, errOut := runCmd(t, append(strings.Fields(path), "extra")...)
		require.Equal(t, 2, code, "%s: %s", path, errOut)
		require.Empty(t, out, path)
		require.Contains(t, errOut, `unexpected argument "extra"`, path)
		require.NotContains(t, errOut, "PORT", path)
	}
}

// TestTriggerRefusesBadValues: --wait -3 is refused, as are zero waits
// and timeouts, before any call.
func TestTriggerRefusesBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--wait", "-3"}, {"--wait=-3"}, {"--wait", "0"}, {"--timeout", "0s"}, {"--timeout", "-1s"}, {"--poll-interval", "0s"}, {"--wait", "x"},
	} {
		code, out, errOut := runCmd(t, append([]string{"trigger"}, args...)...)
		require.Equal(t, 2, code, "%v: %s", args, errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, "jobhook trigger: ")
	}
	_, _, errOut := runCmd(t, "trigger", "--wait", "-3")
	require.Contains(t, errOut, "--wait takes a job id, a positive number, not -3")
}

// TestVersion prints the module version and, when the build has one, the
// VCS revision.
func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "jobhook "), out)
	require.Contains(t, out, "go:")
	require.Contains(t, out, "revision:")

	var b strings.Builder
	writeVersion(&b, &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/jobhook/jobhook", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	})
	require.Equal(t, "jobhook v1.2.3\nmodule:   github.com/jobhook/jobhook\nrevision: 0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)\ncommit:   2026-11-30T10:00:00Z\ngo:       go1.26.8\n", b.String())
}

// TestSchedulesCheckTheCommandBeforeTheConfiguration: help and typos are
// answered without QSTASH_TOKEN.
func TestSchedulesCheckTheCommandBeforeTheConfiguration(t *testing.T) {
	t.Setenv("QSTASH_TOKEN", "")
	code, out, errOut := runCmd(t, "schedules", "--help")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sync")
	code, _, errOut = runCmd(t, "schedules", "lst")
	require.Equal(t, 2, code)
	require.NotContains(t, errOut, "QSTASH_TOKEN")
	code, _, errOut = runCmd(t, "schedules", "sync", "--dry-rn")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "did you mean --dry-run?")
	require.NotContains(t, errOut, "QSTASH_TOKEN")
}

// TestSchedulesSyncNeedsOnlyTheToken: a deploy step with QSTASH_TOKEN (and
// the URLs) but no signing keys syncs, in production too.
func TestSchedulesSyncNeedsOnlyTheToken(t *testing.T) {
	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	dev, err := qstashdev.New(qstashdev.Config{Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey})
	require.NoError(t, err)
	srv := httptest.NewServer(dev)
	defer srv.Close()
	t.Setenv("QSTASH_URL", srv.URL)
	t.Setenv("QSTASH_TOKEN", keys.Token)
	t.Setenv("QSTASH_CURRENT_SIGNING_KEY", "")
	t.Setenv("QSTASH_NEXT_SIGNING_KEY", "")
	t.Setenv("PUBLIC_URL", "https://jobs.example.com")
	t.Setenv("WORKER_SECRET", "") // serve would refuse these in production
	t.Setenv("DATABASE_URL", "")
	file := filepath.Join("..", "..", "qstash.schedules.json")

	code, out, errOut := runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "created        jobhook-drain")
	code, out, errOut = runCmd(t, "schedules", "list")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "jobhook-drain")

	t.Setenv("APP_ENV", "production")
	code, out, errOut = runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "unchanged      jobhook-drain")

	t.Setenv("PUBLIC_URL", "")
	code, _, errOut = runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 1, code)
	require.Equal(t, "jobhook schedules sync: config: PUBLIC_URL is not set: QStash would be told to call http://localhost:8080\n", errOut)

	t.Setenv("PUBLIC_URL", "jobs.example.com")
	code, _, errOut = runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `PUBLIC_URL must be an absolute http(s) URL such as https://jobs.example.com, not "jobs.example.com"`)
}

// TestMigrateInProductionNeedsOnlyTheDatabase: with APP_ENV=production,
// migrate asks for DATABASE_URL and nothing else; with it, it migrates.
func TestMigrateInProductionNeedsOnlyTheDatabase(t *testing.T) {
	t.Setenv("APP_ENV", "production")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("WORKER_SECRET", "")
	t.Setenv("JOB_TIMEOUT", "soon") // not migrate's
	code, _, errOut := runCmd(t, "migrate", "status")
	require.Equal(t, 1, code)
	require.Equal(t, "jobhook migrate status: config: DATABASE_URL is not set: the SQLite file is for development\n", errOut)

	if !testenv.RealConfigured() {
		return
	}
	dbURL := freshSchema(t)
	t.Setenv("DATABASE_URL", dbURL)
	code, out, errOut := runCmd(t, "migrate", "up")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "applied 00001_create_jobs.sql")
	code, out, errOut = runCmd(t, "migrate", "status")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "applied 20")
}

// freshSchema returns TEST_DATABASE_URL pointed at a new empty schema,
// dropped when the test ends.
func freshSchema(t *testing.T) string {
	t.Helper()
	base := testenv.PostgresURL(t)
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := admin.DB()
	require.NoError(t, err)
	schema := "t_" + testenv.RandomID()
	require.NoError(t, admin.Exec("CREATE SCHEMA "+schema).Error)
	t.Cleanup(func() {
		_ = admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		_ = sqlDB.Close()
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestProductionRefusalOneProblemPerLine: serve in production without
// configuration names each problem on its own line.
func TestProductionRefusalOneProblemPerLine(t *testing.T) {
	t.Setenv("APP_ENV", "production")
	t.Setenv("SCRAPE_ALLOW_PRIVATE", "true")
	code, _, errOut := runCmd(t, "serve")
	require.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Greater(t, len(lines), 6, errOut)
	require.Regexp(t, `^jobhook serve: config: \d+ problems:$`, lines[0])
	for _, l := range lines[1:] {
		require.True(t, strings.HasPrefix(l, "  - "), "one problem per line: %q", l)
		require.Less(t, len(l), 160, "no run-on line: %q", l)
	}
	for _, want := range []string{"PUBLIC_URL is not set", "SCRAPE_ALLOW_PRIVATE=true", "WORKER_SECRET", "DATABASE_URL"} {
		require.Contains(t, errOut, want)
	}
}

// TestRunWithoutArguments prints the usage to stderr and exits 2.
func TestRunWithoutArguments(t *testing.T) {
	code, out, errOut := runCmd(t)
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "Available Commands:")
	code, out, _ = runCmd(t, "help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Available Commands:")
	code, out, _ = runCmd(t, "help", "trigger")
	require.Equal(t, 0, code)
	require.Contains(t, out, "--wait")
	require.Contains(t, out, "WORKER_SECRET")
}
