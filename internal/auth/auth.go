// Package auth verifies the bearer tokens of jobhook's API.
//
// A TokenVerifier turns a token into the id of the user it speaks for (the
// JWT "sub" claim). This package has the HS256 verifier used in development
// and for self-issued tokens (AUTH_JWT_SECRET), and MintHS256 to issue such
// tokens (the `jobhook token` command, tests); JWKSVerifier, for tokens of
// an identity provider such as Clerk signed with the keys of a JWKS URL
// (AUTH_JWKS_URL); and MultiVerifier, which sends each token to the one
// verifier that accepts the algorithm its header names.
//
// Every rejection of a token wraps ErrRejected, and one of the more precise
// sentinels (ErrMalformed, ErrExpired, …), so callers can tell "the token is
// bad" (401) from "the verifier could not do its job" (any other error, such
// as a JWKS endpoint that cannot be reached).
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DevJWTSecret is the HS256 secret a zero-config development server accepts
// and `jobhook token` signs with. Never use it in production.
const DevJWTSecret = "jobhook-development-jwt-secret-do-not-use-in-production"

// DevWorkerSecret is the worker secret of a zero-config development server.
// Never use it in production.
const DevWorkerSecret = "jobhook-development-worker-secret"

// MaxTokenBytes is the longest token a verifier looks at; longer ones are
// malformed.
const MaxTokenBytes = 8 << 10

// MaxSubjectBytes is the longest user id ("sub") accepted.
const MaxSubjectBytes = 255

// TokenVerifier checks a bearer token and returns the user id it carries.
//
// A token that must be refused yields an error wrapping ErrRejected (and one
// of ErrMalformed, ErrExpired, ErrNotYetValid, ErrBadSignature, ErrInvalid or
// ErrMissingSubject). Any other error means the token could not be checked.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (userID string, err error)
}

// ErrRejected is wrapped by every error that refuses a token.
var ErrRejected = errors.New("token rejected")

// The reasons a token is refused. Each wraps ErrRejected.
var (
	// ErrMalformed: not a JWT at all (wrong shape, bad base64 or JSON, too long).
	ErrMalformed = fmt.Errorf("%w: malformed token", ErrRejected)
	// ErrExpired: the exp claim is in the past (beyond the leeway).
	ErrExpired = fmt.Errorf("%w: token expired", ErrRejected)
	// ErrNotYetValid: the nbf claim is in the future (beyond the leeway).
	ErrNotYetValid = fmt.Errorf("%w: token not valid yet", ErrRejected)
	// ErrBadSignature: the signature does not match, or the token uses an
	// algorithm the verifier does not accept, or (JWKS) no key of the set
	// may verify it: no kid, an unknown kid, a key of another type.
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrRejected)
	// ErrInvalid: any other invalid token, such as one without exp or with a
	// claim of the wrong type.
	ErrInvalid = fmt.Errorf("%w: invalid token", ErrRejected)
	// ErrMissingSubject: the token has no sub claim, or an empty one.
	ErrMissingSubject = fmt.Errorf("%w: token has no subject", ErrRejected)
)

// The claim checks of a JWKSVerifier. Each wraps ErrInvalid (and so
// ErrRejected): a caller that knows only ErrInvalid treats them alike.
var (
	// ErrWrongIssuer: the iss claim is not the configured issuer.
	ErrWrongIssuer = fmt.Errorf("%w: wrong issuer", ErrInvalid)
	// ErrWrongAudience: no aud value is a configured audience.
	ErrWrongAudience = fmt.Errorf("%w: wrong audience", ErrInvalid)
	// ErrWrongParty: the azp claim is present and not a configured
	// authorized party.
	ErrWrongParty = fmt.Errorf("%w: unauthorized party (azp)", ErrInvalid)
)

// ErrNoSecret is returned by a verifier or MintHS256 that has no secret. It
// is a configuration error, not a rejection of the token.
var ErrNoSecret = errors.New("auth: no HS256 secret configured")

// checkSubject validates a user id taken from a token or given to MintHS256.
func checkSubject(sub string) error {
	if sub == "" {
		return ErrMissingSubject
	}
	if len(sub) > MaxSubjectBytes {
		return fmt.Errorf("%w: subject longer than %d bytes", ErrInvalid, MaxSubjectBytes)
	}
	if !utf8.ValidString(sub) || strings.IndexFunc(sub, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: subject is not printable UTF-8", ErrInvalid)
	}
	return nil
}
