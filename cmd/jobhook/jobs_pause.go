package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/client"
)

// pauseTarget is the --type or --key of pause and resume: exactly one.
type pauseTarget struct {
	typ, key string
}

func (p *pauseTarget) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.typ, "type", "", "a job type, such as social_publish_instagram")
	cmd.Flags().StringVar(&p.key, "key", "", "a flow key, such as ig:17841400000000001")
}

// client checks the command's arguments and returns a client of the
// server: a bad argument is a usage error before any setting is read.
func (p *pauseTarget) client(cmd *cobra.Command, args []string, api *apiFlags) (*client.JobsClient, error) {
	if len(args) > 0 {
		return nil, usagef("unexpected argument %q: name the type with --type or the key with --key", args[0])
	}
	if (p.typ == "") == (p.key == "") {
		return nil, usagef("%s needs exactly one of --type and --key", cmd.CommandPath())
	}
	return api.client()
}

func jobsPauseCmd() *cobra.Command {
	var (
		api    apiFlags
		target pauseTarget
		reason string
	)
	cmd := &cobra.Command{
		Use:   "pause --type TYPE | --key KEY [--reason TEXT] [--url URL]",
		Short: "hold a job type or a flow key until it is resumed",
		Long: `Hold every job of a type (POST /api/job-types/TYPE/pause) or of a flow
key (POST /api/flow-keys/KEY/pause) until 'jobs resume': the jobs stay
pending, their waitingFor says "paused by an operator: REASON", and jobs
already running finish.

Exit status: 0 paused; 1 the API refused (400 unknown_job_type, 400
invalid_flow_key) or could not be reached; 2 a usage error.`,
		Example: `  jobhook jobs pause --type social_publish_instagram --reason "Meta outage"
  jobhook jobs pause --key ig:17841400000000001 --reason "account under review"`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			jc, err := target.client(cmd, args, &api)
			if err != nil {
				return err
			}
			if target.typ != "" {
				st, err := jc.PauseType(cmd.Context(), target.typ, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "paused type %s: %s\n", st.Type, st.Reason)
				return nil
			}
			st, err := jc.PauseFlowKey(cmd.Context(), target.key, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "paused key %s: %s (%d parked)\n", st.Key, st.PauseReason, st.Parked)
			return nil
		},
	}
	target.add(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown on the waiting jobs")
	return api.add(cmd)
}

func jobsResumeCmd() *cobra.Command {
	var (
		api    apiFlags
		target pauseTarget
	)
	cmd := &cobra.Command{
		Use:   "resume --type TYPE | --key KEY [--url URL]",
		Short: "end the hold of a job type, or the hold or pause of a flow key",
		Long: `End an operator's hold of a job type (POST /api/job-types/TYPE/resume),
or the hold or provider's pause of a flow key
(POST /api/flow-keys/KEY/resume): the jobs it held run again.

Exit status: 0 resumed; 1 the API refused or could not be reached; 2 a
usage error.`,
		Example: `  jobhook jobs resume --type social_publish_instagram
  jobhook jobs resume --key ig:17841400000000001`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			jc, err := target.client(cmd, args, &api)
			if err != nil {
				return err
			}
			if target.typ != "" {
				st, err := jc.ResumeType(cmd.Context(), target.typ)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "resumed type %s\n", st.Type)
				return nil
			}
			st, err := jc.ResumeFlowKey(cmd.Context(), target.key)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resumed key %s\n", st.Key)
			return nil
		},
	}
	target.add(cmd)
	return api.add(cmd)
}
