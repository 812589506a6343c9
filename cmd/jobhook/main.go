// Command jobhook runs jobhook, the job runner for serverless Go backends.
//
//	jobhook serve                      run the HTTP API and, by default, the in-process worker
//	jobhook migrate up|down|status     manage the database schema
//	jobhook token --user ID [--ttl D]  print a development API token for a user
//	jobhook schedules sync|list        manage QStash schedules from qstash.schedules.json
//	jobhook trigger [--wait ID]        call the worker endpoint, optionally wait for a job
//	jobhook qstash-dev [--addr A]      run the in-process QStash on its own
//
// Settings come from the environment and an optional .env file; see the
// README's configuration table.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jobhook/jobhook/internal/secretbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `jobhook — a job runner for serverless Go backends

Usage:
  jobhook serve                       run the API; QStash (real, or in-process by default) drives the worker
  jobhook migrate up|down|status      apply, roll back one, or list database migrations
  jobhook token --user ID [--ttl 24h] print an HS256 API token signed with AUTH_JWT_SECRET
                                      (or the development default)
  jobhook schedules sync [--dry-run]  make QStash's schedules match qstash.schedules.json
  jobhook schedules list              list QStash's schedules (jobhook's and others')
  jobhook trigger [--wait ID] [--timeout 2m]
                                      call POST /api/workers; with --wait, until the job is
                                      finished (exit 0 completed, 1 failed or timed out)
  jobhook qstash-dev [--addr 127.0.0.1:8080]
                                      run the in-process QStash on its own, for any client
  jobhook keygen                      print a new JOBS_ENCRYPTION_KEY entry (kid:base64key)
  jobhook load [--url http://localhost:8080] [--jobs 1000] [--concurrency 16]
               [--type T] [--payload JSON]
                                      create jobs through the API of a local server and
                                      report create and end-to-end throughput

Settings are environment variables (a .env file is read when present);
with none at all, serve runs on SQLite, an in-process Redis and an
in-process QStash that calls the server's own /api/workers.
`

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "migrate":
		err = migrate(ctx, args[1:], stdout, stderr)
	case "token":
		err = token(args[1:], stdout, stderr)
	case "schedules":
		err = schedulesCmd(ctx, args[1:], stdout, stderr)
	case "trigger":
		err = triggerCmd(ctx, args[1:], stdout, stderr)
	case "qstash-dev":
		err = qstashDevCmd(ctx, args[1:], stdout, stderr)
	case "load":
		err = loadCmd(ctx, args[1:], stdout, stderr)
	case "keygen":
		var key string
		if key, err = secretbox.GenerateKey(); err == nil {
			fmt.Fprintln(stdout, key)
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "jobhook: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "jobhook %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
