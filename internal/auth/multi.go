package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// AlgorithmVerifier is a TokenVerifier that names the JWS algorithms (the
// header's "alg") it accepts. Verifier (HS256) and JWKSVerifier are
// AlgorithmVerifiers.
type AlgorithmVerifier interface {
	TokenVerifier
	Algorithms() []string
}

// MultiVerifier sends each token to the one verifier that accepts the alg
// named in the token's header, so that an HS256 token is only ever checked
// against the HS256 secret and an RS256 or ES256 token only against the
// JWKS: no key is ever tried with an algorithm it was not configured for.
// The header is read without verification only to choose; the chosen
// verifier parses and checks the whole token again and enforces its own
// algorithm list, so a header that reads differently to it is refused.
//
// A token whose alg no verifier accepts is refused with ErrBadSignature
// ("none", or a known algorithm that is not configured, such as HS256 with
// only a JWKS) or ErrInvalid (no alg, or an alg golang-jwt does not know).
// It is safe for concurrent use if its verifiers are.
type MultiVerifier struct {
	byAlg map[string]TokenVerifier
	algs  []string
}

var _ AlgorithmVerifier = (*MultiVerifier)(nil)

// NewMultiVerifier combines verifiers. Each algorithm may be claimed by
// one verifier only, and "none" by none.
func NewMultiVerifier(verifiers ...AlgorithmVerifier) (*MultiVerifier, error) {
	if len(verifiers) == 0 {
		return nil, errors.New("auth: multi verifier: no verifiers")
	}
	m := &MultiVerifier{byAlg: make(map[string]TokenVerifier)}
	for i, v := range verifiers {
		if v == nil {
			return nil, fmt.Errorf("auth: multi verifier: verifier %d is nil", i)
		}
		algs := v.Algorithms()
		if len(algs) == 0 {
			return nil, fmt.Errorf("auth: multi verifier: verifier %d accepts no algorithm", i)
		}
		for _, alg := range algs {
			if alg == "" || strings.EqualFold(alg, jwt.SigningMethodNone.Alg()) {
				return nil, fmt.Errorf("auth: multi verifier: verifier %d claims algorithm %q", i, alg)
			}
			if _, dup := m.byAlg[alg]; dup {
				return nil, fmt.Errorf("auth: multi verifier: algorithm %s is claimed by two verifiers", alg)
			}
			m.byAlg[alg] = v
			m.algs = append(m.algs, alg)
		}
	}
	return m, nil
}

// Algorithms returns every algorithm some verifier accepts.
func (m *MultiVerifier) Algorithms() []string { return slices.Clone(m.algs) }

// Verify reads the token's alg and lets the verifier for it check the token.
func (m *MultiVerifier) Verify(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > MaxTokenBytes {
		return "", ErrMalformed
	}
	alg, err := headerAlg(token)
	if err != nil {
		return "", err
	}
	v, ok := m.byAlg[alg]
	if !ok {
		if alg != "" && jwt.GetSigningMethod(alg) != nil {
			return "", fmt.Errorf("%w: algorithm %q is not accepted", ErrBadSignature, truncate(alg))
		}
		return "", fmt.Errorf("%w: unknown algorithm %q", ErrInvalid, truncate(alg))
	}
	return v.Verify(ctx, token)
}

// headerAlg returns the alg of a compact JWS's header, decoded the way
// golang-jwt decodes it (unpadded base64url, JSON object). It returns ""
// for a header without a string alg.
func headerAlg(token string) (string, error) {
	head, rest, ok := strings.Cut(token, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return "", fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	alg, _ := h["alg"].(string)
	return alg, nil
}
