package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func apikeysCmd() *cobra.Command {
	return group(&cobra.Command{
		Use:   "apikeys <command>",
		Short: "create, list and revoke the service keys of the app's backend",
		Long: `Manage service keys ("jh_…") through the server's HTTP API (/api/keys), as
the operator ($ADMIN_TOKEN, as for the jobs commands; --url, else
JOBHOOK_URL, else ` + defaultJobhookURL + `).

A service key lets the app's backend call /api/jobs… for the user each
request names in the X-Jobhook-User header, within its scopes: jobs:read
(GET and HEAD) and jobs:write (create, cancel, reschedule, retry). The
server keeps only its SHA-256: the key is printed once, by create. A
revoked key is refused at once, by every server. Each request a key makes
is logged with the key's id and name and the user it acted for.

Exit status: 0 success; 1 the API refused or could not be reached; 2 a
usage error.`,
	}, apikeysCreateCmd(), apikeysListCmd(), apikeysRevokeCmd())
}

func apikeysCreateCmd() *cobra.Command {
	var (
		api    apiFlags
		name   string
		scopes string
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME --scopes jobs:write,jobs:read [--url URL]",
		Short: "issue a service key and print it, this once",
		Long: `Issue a service key (POST /api/keys) and print it on stdout, alone on
its line, so that it can go straight into a secret store; its id, name and
scopes go to stderr. The key cannot be shown again: keep it now.`,
		Example:               `  jobhook apikeys create --name backend --scopes jobs:write,jobs:read`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(name) == "" {
				return usagef("--name is needed")
			}
			list := strings.Split(scopes, ",")
			for i := range list {
				list[i] = strings.TrimSpace(list[i])
			}
			if scopes == "" {
				return usagef("--scopes is needed: jobs:read, jobs:write or both, comma-separated")
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			k, err := jc.CreateAPIKey(cmd.Context(), name, list)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created API key %d %q (%s), scopes %s; it is shown only now:\n", k.ID, k.Name, k.Prefix, strings.Join(k.Scopes, ","))
			fmt.Fprintln(cmd.OutOrStdout(), k.Key)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "what the key is for, shown in lists (e.g. backend)")
	cmd.Flags().StringVar(&scopes, "scopes", "", "comma-separated: jobs:read, jobs:write")
	return api.add(cmd)
}

func apikeysListCmd() *cobra.Command {
	var (
		api    apiFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:                   "list [--json] [--url URL]",
		Short:                 "list the service keys, with their last use",
		Long:                  `List every service key, revoked ones included (GET /api/keys): id, name, prefix, scopes, created, last used (to the minute) and revoked, in UTC. Never the keys themselves.`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jc, err := api.client()
			if err != nil {
				return err
			}
			keys, err := jc.APIKeys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), keys)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSCOPES\tCREATED\tLAST USED\tREVOKED")
			for _, k := range keys {
				used, revoked := "never", "-"
				if k.LastUsedAt != nil {
					used = k.LastUsedAt.UTC().Format(tableTime)
				}
				if k.RevokedAt != nil {
					revoked = k.RevokedAt.UTC().Format(tableTime)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, cell(k.Name), k.Prefix, strings.Join(k.Scopes, ","), k.CreatedAt.UTC().Format(tableTime), used, revoked)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of the keys")
	return api.add(cmd)
}

func apikeysRevokeCmd() *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:                   "revoke ID [--url URL]",
		Short:                 "revoke a service key at once",
		Long:                  `Revoke a service key (POST /api/keys/ID/revoke): from now on every server refuses it with 401 invalid_token.`,
		Example:               `  jobhook apikeys revoke 3`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes one key id (see 'jobhook apikeys list')", cmd.CommandPath())
			}
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("unexpected argument %q: a key id is a positive integer", args[0])
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			k, err := jc.RevokeAPIKey(cmd.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %d %q (%s)\n", k.ID, k.Name, k.Prefix)
			return nil
		},
	}
	return api.add(cmd)
}
