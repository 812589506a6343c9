package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/secretbox"
)

func tokenCmd() *cobra.Command {
	var (
		user string
		ttl  time.Duration
	)
	cmd := &cobra.Command{
		Use:                   "token --user ID [--ttl 24h]",
		DisableFlagsInUseLine: true,
		Short:                 "print a development API token for a user",
		Long: `Print an HS256 API token for a user, signed with AUTH_JWT_SECRET (or, with
neither AUTH_JWT_SECRET nor AUTH_JWKS_URL set, the development default
that a zero-config server accepts). Refused with APP_ENV=production:
tokens come from your identity provider there.`,
		Example: `  TOKEN=$(jobhook token --user alice)
  curl -H "Authorization: Bearer $TOKEN" http://localhost:8080/api/jobs`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usagef("--user is required")
			}
			if ttl <= 0 {
				return usagef("--ttl must be positive, not %s", ttl)
			}
			env, err := config.Load("APP_ENV")
			if err != nil {
				return err
			}
			if env.Production() {
				return errors.New("refusing to mint tokens with APP_ENV=production; tokens come from your identity provider there")
			}
			cfg, err := config.Load("APP_ENV", "AUTH_JWT_SECRET", "AUTH_JWKS_URL")
			if err != nil {
				return err
			}
			if cfg.AuthJWTSecret == "" {
				return errors.New("AUTH_JWT_SECRET is not set (user tokens come from the JWKS at AUTH_JWKS_URL)")
			}
			tok, err := auth.MintHS256([]byte(cfg.AuthJWTSecret), user, ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "the user id (the token's sub); required")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	return reads(cmd, "APP_ENV", "AUTH_JWT_SECRET", "AUTH_JWKS_URL")
}

func keygenCmd() *cobra.Command {
	return reads(&cobra.Command{
		Use:   "keygen",
		Short: "print a new JOBS_ENCRYPTION_KEY entry (kid:base64key)",
		Long: `Print a new random key for JOBS_ENCRYPTION_KEY, as kid:base64key. To
rotate, put the new entry first and keep the old ones after it, comma-separated:
the first encrypts, all decrypt.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := secretbox.GenerateKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		},
	})
}
