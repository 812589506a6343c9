package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew allowed when checking exp and nbf.
const Leeway = 5 * time.Second

// Verifier checks HS256-signed JWTs against one shared secret. It accepts
// only HS256 (so a public key can never be confused with the secret),
// requires exp, and allows Leeway of clock skew. It is safe for concurrent
// use.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

var _ AlgorithmVerifier = (*Verifier)(nil)

// Algorithms returns the one algorithm the verifier accepts, HS256.
func (v *Verifier) Algorithms() []string { return []string{jwt.SigningMethodHS256.Alg()} }

// NewHS256Verifier returns a verifier for tokens signed with secret. The
// secret is copied. With an empty secret every Verify fails with ErrNoSecret.
func NewHS256Verifier(secret []byte) *Verifier {
	return newHS256Verifier(secret, nil)
}

// newHS256Verifier is NewHS256Verifier with an injected clock (nil: the
// system clock).
func newHS256Verifier(secret []byte, now func() time.Time) *Verifier {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &Verifier{secret: append([]byte(nil), secret...), parser: jwt.NewParser(opts...)}
}

// Verify checks the token's signature, exp and nbf, and returns its sub.
// A header with crit is refused (ErrInvalid), and so is an exp, nbf or iat
// that is not a JSON number (ErrMalformed). A refused token yields an error wrapping ErrRejected and the sentinel
// naming the reason; the verifier never refuses a token for any other
// reason than the token itself, except ErrNoSecret.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	if len(v.secret) == 0 {
		return "", ErrNoSecret
	}
	if token == "" || len(token) > MaxTokenBytes {
		return "", ErrMalformed
	}
	var claims hsClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t); err != nil {
			return nil, err
		}
		return v.secret, nil
	})
	if err != nil {
		return "", classify(err)
	}
	if err := checkSubject(claims.Subject); err != nil {
		return "", err
	}
	return claims.Subject, nil
}

// classify maps a golang-jwt error to this package's sentinels. The order
// matters: golang-jwt checks the signature before the claims, and a claims
// error may join several reasons (expired and not valid yet, say).
func classify(err error) error {
	var reason error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = ErrMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ErrBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = ErrNotYetValid
	default:
		// Unverifiable (unknown or "none" alg), missing exp, claims of the
		// wrong type, and anything golang-jwt adds later.
		reason = ErrInvalid
	}
	return fmt.Errorf("%w (%v)", reason, err)
}

// MintHS256 returns a token for userID signed with secret, issued at now
// and expiring ttl later. It is for `jobhook token` and tests; the server
// only verifies.
func MintHS256(secret []byte, userID string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", ErrNoSecret
	}
	if userID == "" {
		return "", errors.New("auth: mint token: a user id is required")
	}
	if checkSubject(userID) != nil {
		return "", fmt.Errorf("auth: mint token: the user id must be printable UTF-8 of at most %d bytes", MaxSubjectBytes)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: mint token: ttl must be positive, got %s", ttl)
	}
	claims := jwt.RegisteredClaims{
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint token: %w", err)
	}
	return signed, nil
}
