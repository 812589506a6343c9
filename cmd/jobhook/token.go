package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
)

func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user id (the token's sub); required")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *user == "" {
		fmt.Fprintln(stderr, "usage: jobhook token --user ID [--ttl 24h]")
		return errUsage
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	cfg, err := config.Load("APP_ENV", "AUTH_JWT_SECRET", "AUTH_JWKS_URL")
	if err != nil {
		return err
	}
	if cfg.Production() {
		return errors.New("refusing to mint tokens with APP_ENV=production; tokens come from your identity provider there")
	}
	if cfg.AuthJWTSecret == "" {
		return errors.New("AUTH_JWT_SECRET is not set (user tokens come from the JWKS at AUTH_JWKS_URL)")
	}
	tok, err := auth.MintHS256([]byte(cfg.AuthJWTSecret), *user, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
