package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth/authtest"
)

// strictRows are the tokens both verifiers must refuse for their header or
// claim types, built by sign from a header addition and claims changes.
func strictRows(t *testing.T, now time.Time, sign func(header map[string]any, claims jwt.MapClaims) string, good jwt.MapClaims) []attack {
	t.Helper()
	set := func(k string, v any) jwt.MapClaims {
		return edit(good, func(c jwt.MapClaims) { c[k] = v })
	}
	future := now.Add(time.Hour).Unix()
	past := now.Add(-time.Minute).Unix()
	return []attack{
		{name: "crit naming an extension", token: sign(map[string]any{"crit": []string{"exp"}}, good), want: ErrInvalid},
		{name: "crit with an unknown extension", token: sign(map[string]any{"crit": []string{"urn:example:x"}, "urn:example:x": true}, good), want: ErrInvalid},
		{name: "crit empty", token: sign(map[string]any{"crit": []string{}}, good), want: ErrInvalid},
		{name: "crit not a list", token: sign(map[string]any{"crit": "b64"}, good), want: ErrInvalid},
		{name: "exp as a numeric string", token: sign(nil, set("exp", fmt.Sprint(future))), want: ErrMalformed},
		{name: "nbf as a numeric string", token: sign(nil, set("nbf", fmt.Sprint(past))), want: ErrMalformed},
		{name: "iat as a numeric string", token: sign(nil, set("iat", fmt.Sprint(past))), want: ErrMalformed},
		{name: "exp true", token: sign(nil, set("exp", true)), want: ErrMalformed},
		{name: "exp null", token: sign(nil, set("exp", nil)), want: ErrMalformed},
		{name: "iat an object", token: sign(nil, set("iat", map[string]any{"n": 1})), want: ErrMalformed},
		{name: "nbf a list", token: sign(nil, set("nbf", []int64{past})), want: ErrMalformed},
		// Numbers stay numbers, fractions included (RFC 7519 NumericDate).
		{name: "fractional exp", token: sign(nil, set("exp", float64(future)+0.5)), user: good["sub"].(string)},
		{name: "exponent form exp", token: sign(nil, set("exp", json1e10{})), user: good["sub"].(string)},
		{name: "no extra header", token: sign(map[string]any{"typ": "JWT"}, good), user: good["sub"].(string)},
	}
}

// json1e10 is 1e10 (year 2286) written with an exponent.
type json1e10 struct{}

func (json1e10) MarshalJSON() ([]byte, error) { return []byte("1e10"), nil }

// TestHS256RefusesCritAndNonNumericDates: RFC 7515 §4.1.11 — a crit header
// names extensions the verifier must understand, and jobhook understands
// none; RFC 7519 — exp, nbf and iat are JSON numbers, so "1700000000" (a
// string) is refused rather than read as a date.
func TestHS256RefusesCritAndNonNumericDates(t *testing.T) {
	now := time.Now()
	good := jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	sign := func(header map[string]any, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(testSecret)
		require.NoError(t, err)
		return s
	}
	runAttacks(t, newHS256Verifier(testSecret, func() time.Time { return now }), strictRows(t, now, sign, good))
}

// TestJWKSRefusesCritAndNonNumericDates is the same for the JWKS verifier.
func TestJWKSRefusesCritAndNonNumericDates(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	now := clock.Now()
	v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	key := srv.RSAKID()
	sign := func(header map[string]any, claims jwt.MapClaims) string {
		if len(header) == 0 {
			return srv.Sign(t, claims, key)
		}
		// Sign with the published key by way of a header-editing round
		// trip: the fake signs whatever header the token carries.
		return srv.SignHeader(t, claims, key, header)
	}
	rows := strictRows(t, now, sign, authtest.Claims("user_rs", now))
	runAttacks(t, v, rows)
	require.Equal(t, 1, srv.Requests(), "a crit token must not make the verifier fetch the key set")
}

// TestCritBeforeKeyLookup: a crit token with an unknown kid is refused for
// its crit and costs no JWKS fetch.
func TestCritBeforeKeyLookup(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	tok := rawJWT(`{"alg":"RS256","kid":"ghost","crit":["x"],"x":1}`, `{"sub":"u","exp":9999999999}`, "c2ln")
	_, err := v.Verify(t.Context(), tok)
	require.ErrorIs(t, err, ErrInvalid)
	require.True(t, strings.Contains(err.Error(), "crit"), err.Error())
	require.Equal(t, 1, srv.Requests())
}
