package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth/authtest"
)

const (
	testIssuer = "https://clerk.example.com"
	testAud    = "jobhook-api"
	testOrigin = "https://app.example.com"
)

// fakeClock is the injected clock of a verifier under test: token times
// and the unknown-kid rate limit read it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var quietLog = slog.New(slog.DiscardHandler)

// newTestJWKS returns a verifier of srv's key set on clock, closed when the
// test ends.
func newTestJWKS(t testing.TB, url string, cfg JWKSConfig, clock *fakeClock) *JWKSVerifier {
	t.Helper()
	cfg.URL = url
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	v, err := newJWKSVerifier(t.Context(), cfg, clock.Now)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// clerkConfig checks issuer, audience and authorized party.
func clerkConfig() JWKSConfig {
	return JWKSConfig{Issuer: testIssuer, Audience: []string{testAud}, AuthorizedParties: []string{testOrigin + "/"}}
}

// clerkClaims are the claims of a Clerk session token for sub at now.
func clerkClaims(sub string, now time.Time) jwt.MapClaims {
	c := authtest.Claims(sub, now)
	c["iss"] = testIssuer
	c["aud"] = testAud
	c["azp"] = testOrigin
	c["nbf"] = now.Add(-time.Second).Unix()
	c["sid"] = "sess_1"
	c["v"] = 2
	return c
}

// edit returns a copy of c with the changes made by f.
func edit(c jwt.MapClaims, f func(jwt.MapClaims)) jwt.MapClaims {
	c = maps.Clone(c)
	f(c)
	return c
}

// swapPayload replaces a token's claims, keeping its header and signature.
func swapPayload(t testing.TB, token string, claims jwt.MapClaims) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := json.Marshal(claims)
	require.NoError(t, err)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
}

// rawJWT assembles an unsigned-looking token from literal JSON.
func rawJWT(header, claims, sig string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims)) + "." + sig
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	require.NoError(t, err)
	return k
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

type attack struct {
	name  string
	token string
	want  error  // nil: accepted
	user  string // the user id when accepted
}

// runAttacks checks every row against v: an accepted row must return its
// user, a refused one its sentinel, wrapped in ErrRejected, and no user.
func runAttacks(t *testing.T, v TokenVerifier, rows []attack) {
	t.Helper()
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			user, err := v.Verify(t.Context(), tt.token)
			t.Logf("Verify: %q, %v", user, err)
			if tt.want == nil {
				require.NoError(t, err)
				require.Equal(t, tt.user, user)
				return
			}
			require.ErrorIs(t, err, tt.want)
			require.ErrorIs(t, err, ErrRejected, "a refusal must wrap ErrRejected (401, not 503)")
			require.Empty(t, user)
		})
	}
}

// TestJWKSAttacks is the token attack suite: each row an attack on a
// JWKS-verified (Clerk-style) token, and the sentinel that refuses it. It
// runs against the JWKS verifier alone and against the MultiVerifier that
// also holds the HS256 development verifier, as the server is wired.
func TestJWKSAttacks(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	now := clock.Now()
	v := newTestJWKS(t, srv.URL(), clerkConfig(), clock)
	chain, err := NewMultiVerifier(v, NewHS256Verifier(testSecret))
	require.NoError(t, err)

	rsaKID, ecKID := srv.RSAKID(), srv.ECKID()
	good := clerkClaims("user_rs", now)
	valid := srv.Sign(t, good, rsaKID)
	parts := strings.Split(valid, ".")
	ghostRSA, ghostEC := mustRSA(t, 2048), mustEC(t)
	rsaPEM := srv.PublicKeyPEM(t, rsaKID)
	ecPEM := srv.PublicKeyPEM(t, ecKID)
	rsaPub := srv.PublicKey(rsaKID).(*rsa.PublicKey)
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)})
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	require.NoError(t, err)
	sign := func(c jwt.MapClaims) string { return srv.Sign(t, c, rsaKID) }
	set := func(k string, val any) string {
		return sign(edit(good, func(c jwt.MapClaims) { c[k] = val }))
	}
	drop := func(k string) string {
		return sign(edit(good, func(c jwt.MapClaims) { delete(c, k) }))
	}
	hs := func(secret []byte, kid string) string {
		return authtest.SignWith(t, jwt.SigningMethodHS256, secret, kid, good)
	}

	rows := []attack{
		{name: "valid RS256", token: valid, user: "user_rs"},
		{name: "valid ES256", token: srv.Sign(t, clerkClaims("user_es", now), ecKID), user: "user_es"},
		{name: "valid without azp (Clerk: optional)", token: drop("azp"), user: "user_rs"},
		{name: "valid with aud list", token: set("aud", []string{"other", testAud}), user: "user_rs"},
		{name: "expired within the leeway", token: set("exp", now.Add(-Leeway/2).Unix()), user: "user_rs"},

		{name: "alg none", token: authtest.SignWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, rsaKID, good), want: ErrBadSignature},
		{name: "alg none, original signature kept", token: rawJWT(`{"alg":"none","kid":"`+rsaKID+`"}`, `{"sub":"admin","exp":9999999999}`, parts[2]), want: ErrBadSignature},
		{name: "alg None (case)", token: rawJWT(`{"alg":"None","kid":"`+rsaKID+`"}`, `{"sub":"admin","exp":9999999999}`, ""), want: ErrInvalid},
		{name: "HS256 with the RSA public key PEM (confusion)", token: hs(rsaPEM, rsaKID), want: ErrBadSignature},
		{name: "HS256 with the RSA public key PEM, no kid", token: hs(rsaPEM, ""), want: ErrBadSignature},
		{name: "HS256 with the RSA PKCS#1 PEM", token: hs(pkcs1PEM, rsaKID), want: ErrBadSignature},
		{name: "HS256 with the RSA public key DER", token: hs(der, rsaKID), want: ErrBadSignature},
		{name: "HS256 with the EC public key PEM", token: hs(ecPEM, ecKID), want: ErrBadSignature},
		{name: "HS512 with the RSA public key PEM", token: authtest.SignWith(t, jwt.SigningMethodHS512, rsaPEM, rsaKID, good), want: ErrBadSignature},
		{name: "PS256 (not configured) with a key of the set's type", token: authtest.SignWith(t, jwt.SigningMethodPS256, ghostRSA, rsaKID, good), want: ErrBadSignature},
		{name: "RS512 (not configured)", token: authtest.SignWith(t, jwt.SigningMethodRS512, ghostRSA, rsaKID, good), want: ErrBadSignature},
		{name: "unknown alg", token: rawJWT(`{"alg":"XY99","kid":"`+rsaKID+`"}`, `{"sub":"admin","exp":9999999999}`, parts[2]), want: ErrInvalid},
		{name: "no alg", token: rawJWT(`{"kid":"`+rsaKID+`"}`, `{"sub":"admin","exp":9999999999}`, parts[2]), want: ErrInvalid},

		{name: "expired", token: set("exp", now.Add(-time.Hour).Unix()), want: ErrExpired},
		{name: "expired beyond the leeway", token: set("exp", now.Add(-Leeway-2*time.Second).Unix()), want: ErrExpired},
		{name: "not yet valid", token: set("nbf", now.Add(time.Hour).Unix()), want: ErrNotYetValid},
		{name: "no exp", token: drop("exp"), want: ErrInvalid},
		{name: "exp of the wrong type", token: set("exp", "tomorrow"), want: ErrMalformed},

		{name: "wrong issuer", token: set("iss", "https://evil.example.com"), want: ErrWrongIssuer},
		{name: "issuer with a trailing slash", token: set("iss", testIssuer+"/"), want: ErrWrongIssuer},
		{name: "no issuer", token: drop("iss"), want: ErrWrongIssuer},
		{name: "wrong audience", token: set("aud", "another-api"), want: ErrWrongAudience},
		{name: "no audience", token: drop("aud"), want: ErrWrongAudience},
		{name: "azp not allowed", token: set("azp", "https://evil.example.com"), want: ErrWrongParty},
		{name: "azp of a lookalike origin", token: set("azp", testOrigin+".evil.com"), want: ErrWrongParty},
		{name: "missing sub", token: drop("sub"), want: ErrMissingSubject},
		{name: "empty sub", token: set("sub", ""), want: ErrMissingSubject},
		{name: "sub with a control character", token: set("sub", "user\n1"), want: ErrInvalid},

		{name: "unknown kid", token: authtest.SignWith(t, jwt.SigningMethodRS256, ghostRSA, "ghost-kid", good), want: ErrBadSignature},
		{name: "no kid", token: authtest.SignWith(t, jwt.SigningMethodRS256, ghostRSA, "", good), want: ErrBadSignature},
		{name: "no kid, signed with the real key's kid removed", token: rawJWT(`{"alg":"RS256"}`, `{"sub":"admin","exp":9999999999}`, parts[2]), want: ErrBadSignature},
		{name: "kid not a string", token: rawJWT(`{"alg":"RS256","kid":1}`, `{"sub":"admin","exp":9999999999}`, parts[2]), want: ErrBadSignature},
		{name: "forged: another key under the published kid", token: authtest.SignWith(t, jwt.SigningMethodRS256, ghostRSA, rsaKID, good), want: ErrBadSignature},
		{name: "ES256 naming the RSA key's kid", token: authtest.SignWith(t, jwt.SigningMethodES256, ghostEC, rsaKID, good), want: ErrBadSignature},
		{name: "RS256 naming the EC key's kid", token: authtest.SignWith(t, jwt.SigningMethodRS256, ghostRSA, ecKID, good), want: ErrBadSignature},
		{name: "tampered payload (sub swapped)", token: swapPayload(t, valid, edit(good, func(c jwt.MapClaims) { c["sub"] = "admin" })), want: ErrBadSignature},
		{name: "tampered payload (exp extended)", token: swapPayload(t, srv.Sign(t, edit(good, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), rsaKID), good), want: ErrBadSignature},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", want: ErrBadSignature},
		{name: "signature of another token", token: parts[0] + "." + strings.Split(drop("azp"), ".")[1] + "." + parts[2], want: ErrBadSignature},

		{name: "over MaxTokenBytes", token: set("pad", strings.Repeat("x", MaxTokenBytes)), want: ErrMalformed},
		{name: "empty", token: "", want: ErrMalformed},
		{name: "garbage", token: "a.b.c", want: ErrMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], want: ErrMalformed},
		{name: "four parts", token: valid + ".x", want: ErrMalformed},
		{name: "header not JSON", token: base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], want: ErrMalformed},
	}
	t.Run("jwks", func(t *testing.T) { runAttacks(t, v, rows) })
	t.Run("chain", func(t *testing.T) { runAttacks(t, chain, rows) })
}

// TestJWKSKeyRotation rotates the server's keys mid-test: a token of the
// new key is accepted at once (an unknown kid refreshes the set), and once
// the set was refetched the old key's tokens are refused.
func TestJWKSKeyRotation(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	require.Equal(t, 1, srv.Requests(), "one fetch at construction")

	oldKID := srv.RSAKID()
	oldTok := srv.Sign(t, authtest.Claims("u_old", clock.Now()), oldKID)
	user, err := v.Verify(t.Context(), oldTok)
	require.NoError(t, err)
	require.Equal(t, "u_old", user)
	require.Equal(t, 1, srv.Requests(), "a cached kid costs no fetch")

	newRSA, newEC := srv.Rotate()
	require.False(t, srv.Published(oldKID))
	user, err = v.Verify(t.Context(), srv.Sign(t, authtest.Claims("u_new", clock.Now()), newRSA))
	require.NoError(t, err, "a new key must be picked up on its first token")
	require.Equal(t, "u_new", user)
	require.Equal(t, 2, srv.Requests(), "the unknown kid refreshed the set once")

	user, err = v.Verify(t.Context(), srv.Sign(t, authtest.Claims("u_new_ec", clock.Now()), newEC))
	require.NoError(t, err)
	require.Equal(t, "u_new_ec", user)

	// The refetched set no longer has the old key.
	_, err = v.Verify(t.Context(), oldTok)
	require.ErrorIs(t, err, ErrBadSignature)
	require.Equal(t, 2, srv.Requests(), "within the rate limit the old kid causes no fetch")

	// After the rate limit the old kid may refetch once, and is still gone.
	clock.Advance(DefaultRefreshRateLimit)
	_, err = v.Verify(t.Context(), oldTok)
	require.ErrorIs(t, err, ErrBadSignature)
	require.Equal(t, 3, srv.Requests())
}

// TestJWKSBackgroundRefresh: with the unknown-kid budget spent, a rotated
// key is still picked up by the periodic refresh.
func TestJWKSBackgroundRefresh(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	v := newTestJWKS(t, srv.URL(), JWKSConfig{RefreshInterval: 20 * time.Millisecond}, clock)
	ghost := authtest.SignWith(t, jwt.SigningMethodES256, mustEC(t), "ghost", authtest.Claims("x", clock.Now()))
	_, err := v.Verify(t.Context(), ghost)
	require.ErrorIs(t, err, ErrBadSignature) // spends the unknown-kid fetch; the fake clock never advances

	newRSA, _ := srv.Rotate()
	tok := srv.Sign(t, authtest.Claims("u1", clock.Now()), newRSA)
	require.Eventually(t, func() bool {
		user, err := v.Verify(t.Context(), tok)
		return err == nil && user == "u1"
	}, 10*time.Second, 5*time.Millisecond, "the background refresh must publish the rotated key")
}

// TestJWKSUnknownKIDFlood: 200 tokens with unknown kids, sent at once, cost
// one JWKS fetch on top of the construction's: at most 2. After the rate
// limit has passed, another flood costs one more.
func TestJWKSUnknownKIDFlood(t *testing.T) {
	const flood = 200
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	ghost := mustEC(t)
	tokens := make([]string, flood)
	for i := range tokens {
		tokens[i] = authtest.SignWith(t, jwt.SigningMethodES256, ghost, fmt.Sprintf("flood-%d", i), authtest.Claims("attacker", clock.Now()))
	}
	valid := srv.Sign(t, authtest.Claims("u1", clock.Now()), srv.RSAKID())

	send := func() {
		errs := make([]error, flood)
		var wg sync.WaitGroup
		for i, tok := range tokens {
			wg.Go(func() { _, errs[i] = v.Verify(t.Context(), tok) })
		}
		wg.Wait()
		for _, err := range errs {
			require.ErrorIs(t, err, ErrBadSignature)
		}
	}

	send()
	require.LessOrEqual(t, srv.Requests(), 2, "flood bound: construction + one unknown-kid refresh")
	require.Equal(t, 2, srv.Requests())
	send()
	require.Equal(t, 2, srv.Requests(), "a second flood in the same window costs nothing")
	_, err := v.Verify(t.Context(), valid)
	require.NoError(t, err, "legitimate tokens pass during a flood")

	clock.Advance(DefaultRefreshRateLimit)
	send()
	require.Equal(t, 3, srv.Requests(), "one more fetch per RefreshRateLimit")
}

// TestJWKSUnavailable: a key set that cannot be fetched is not the token's
// fault: Verify's error wraps ErrJWKSUnavailable, not ErrRejected (503).
func TestJWKSUnavailable(t *testing.T) {
	t.Run("down at first use", func(t *testing.T) {
		srv := authtest.NewJWKSServer(t)
		srv.SetStatus(http.StatusServiceUnavailable)
		clock := newFakeClock()
		v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
		tok := srv.Sign(t, authtest.Claims("u1", clock.Now()), srv.RSAKID())
		for range 3 {
			user, err := v.Verify(t.Context(), tok)
			require.ErrorIs(t, err, ErrJWKSUnavailable)
			require.NotErrorIs(t, err, ErrRejected)
			require.Empty(t, user)
		}
		// A flood while down is bounded too: one fetch at construction,
		// one for the first unknown kid.
		require.Equal(t, 2, srv.Requests())

		// Back up: the next unknown-kid refresh (after the rate limit)
		// loads the set.
		srv.SetStatus(http.StatusOK)
		clock.Advance(DefaultRefreshRateLimit)
		user, err := v.Verify(t.Context(), tok)
		require.NoError(t, err)
		require.Equal(t, "u1", user)
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := authtest.NewJWKSServer(t)
		tok := srv.Sign(t, authtest.Claims("u1", time.Now()), srv.RSAKID())
		srv.Close()
		v := newTestJWKS(t, srv.URL(), JWKSConfig{}, newFakeClock())
		_, err := v.Verify(t.Context(), tok)
		require.ErrorIs(t, err, ErrJWKSUnavailable)
		require.NotErrorIs(t, err, ErrRejected)
		// Still a rejection when the token is bad whatever the keys.
		_, err = v.Verify(t.Context(), "a.b.c")
		require.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("down after loading", func(t *testing.T) {
		srv := authtest.NewJWKSServer(t)
		clock := newFakeClock()
		v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
		srv.SetStatus(http.StatusBadGateway)
		user, err := v.Verify(t.Context(), srv.Sign(t, authtest.Claims("u1", clock.Now()), srv.ECKID()))
		require.NoError(t, err, "cached keys keep working while the JWKS is down")
		require.Equal(t, "u1", user)

		ghost := authtest.SignWith(t, jwt.SigningMethodES256, mustEC(t), "rotated-maybe", authtest.Claims("u2", clock.Now()))
		_, err = v.Verify(t.Context(), ghost)
		require.ErrorIs(t, err, ErrJWKSUnavailable, "the refresh this kid needed failed: 503")
		require.NotErrorIs(t, err, ErrRejected)
		_, err = v.Verify(t.Context(), ghost)
		require.ErrorIs(t, err, ErrBadSignature, "rate-limited with a loaded set: unknown kid")
	})
	t.Run("closed verifier", func(t *testing.T) {
		srv := authtest.NewJWKSServer(t)
		clock := newFakeClock()
		v := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
		v.Close()
		_, err := v.Verify(t.Context(), srv.Sign(t, authtest.Claims("u1", clock.Now()), srv.RSAKID()))
		require.NoError(t, err, "cached keys survive Close")
		ghost := authtest.SignWith(t, jwt.SigningMethodES256, mustEC(t), "new", authtest.Claims("u2", clock.Now()))
		_, err = v.Verify(t.Context(), ghost)
		require.ErrorIs(t, err, ErrJWKSUnavailable)
	})
}

// TestJWKSBadKeySets: what a key set may hold that must never verify a
// token, and sets that are no key set at all.
func TestJWKSBadKeySets(t *testing.T) {
	weak := mustRSA(t, 1024)
	strong := mustRSA(t, 2048)
	ec := mustEC(t)
	secret := []byte("a symmetric key published by mistake")
	marshal := func(key any, kid string, use jwkset.USE) jwkset.JWKMarshal {
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: use}})
		require.NoError(t, err)
		return jwk.Marshal() // no "alg": only the key's type ties it to an algorithm
	}
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{
		marshal(&weak.PublicKey, "weak", ""),
		marshal(&strong.PublicKey, "strong", ""),
		marshal(&strong.PublicKey, "enc", jwkset.UseEnc),
		marshal(&ec.PublicKey, "ec", jwkset.UseSig),
		{KTY: jwkset.KtyOct, KID: "oct", K: base64.RawURLEncoding.EncodeToString(secret), ALG: jwkset.AlgHS256},
	}}
	body, err := json.Marshal(set)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(srv.Close)
	clock := newFakeClock()
	v := newTestJWKS(t, srv.URL, JWKSConfig{}, clock)
	claims := authtest.Claims("u1", clock.Now())

	runAttacks(t, v, []attack{
		{name: "strong RSA key without alg", token: authtest.SignWith(t, jwt.SigningMethodRS256, strong, "strong", claims), user: "u1"},
		{name: "EC key without alg", token: authtest.SignWith(t, jwt.SigningMethodES256, ec, "ec", claims), user: "u1"},
		{name: "1024-bit RSA key", token: authtest.SignWith(t, jwt.SigningMethodRS256, weak, "weak", claims), want: ErrBadSignature},
		{name: "key marked for encryption", token: authtest.SignWith(t, jwt.SigningMethodRS256, strong, "enc", claims), want: ErrBadSignature},
		{name: "symmetric key in the set, HS256", token: authtest.SignWith(t, jwt.SigningMethodHS256, secret, "oct", claims), want: ErrBadSignature},
		{name: "symmetric key in the set, RS256 header", token: rawJWT(`{"alg":"RS256","kid":"oct"}`, `{"sub":"u1","exp":9999999999}`, "c2ln"), want: ErrBadSignature},
		{name: "ES256 token naming an RSA key without alg", token: authtest.SignWith(t, jwt.SigningMethodES256, ec, "strong", claims), want: ErrBadSignature},
		{name: "RS256 token naming an EC key without alg", token: authtest.SignWith(t, jwt.SigningMethodRS256, strong, "ec", claims), want: ErrBadSignature},
	})

	for name, handler := range map[string]http.HandlerFunc{
		"not JSON": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) },
		"no keys":  func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) },
		"only a symmetric key": func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, `{"keys":[{"kty":"oct","kid":"oct","k":%q}]}`, base64.RawURLEncoding.EncodeToString(secret))
		},
		"too large": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", MaxJWKSBytes) + `"}`))
		},
		"status 304": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) },
	} {
		t.Run(name, func(t *testing.T) {
			bad := httptest.NewServer(handler)
			t.Cleanup(bad.Close)
			v := newTestJWKS(t, bad.URL, JWKSConfig{}, clock)
			_, err := v.Verify(t.Context(), authtest.SignWith(t, jwt.SigningMethodRS256, strong, "strong", claims))
			require.ErrorIs(t, err, ErrJWKSUnavailable)
			require.NotErrorIs(t, err, ErrRejected)
		})
	}
}

func TestJWKSLeeway(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	at := clock.Now()
	kid := srv.RSAKID()
	tok := func(exp, nbf time.Duration) string {
		c := authtest.Claims("u1", at)
		c["exp"] = at.Add(exp).Unix()
		c["nbf"] = at.Add(nbf).Unix()
		return srv.Sign(t, c, kid)
	}
	def := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	wide := newTestJWKS(t, srv.URL(), JWKSConfig{Leeway: time.Minute}, clock)
	tests := []struct {
		name     string
		v        *JWKSVerifier
		exp, nbf time.Duration
		want     error
	}{
		{"expired 3s ago, default leeway 5s", def, -3 * time.Second, -time.Hour, nil},
		{"expired 7s ago, default leeway", def, -7 * time.Second, -time.Hour, ErrExpired},
		{"nbf in 3s, default leeway", def, time.Hour, 3 * time.Second, nil},
		{"nbf in 7s, default leeway", def, time.Hour, 7 * time.Second, ErrNotYetValid},
		{"expired 30s ago, leeway 1m", wide, -30 * time.Second, -time.Hour, nil},
		{"expired 2m ago, leeway 1m", wide, -2 * time.Minute, -time.Hour, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(t.Context(), tok(tt.exp, tt.nbf))
			if tt.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.want)
			}
		})
	}
}

func TestJWKSConfig(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	v := newTestJWKS(t, srv.URL(), JWKSConfig{}, newFakeClock())
	require.Equal(t, []string{"RS256", "ES256"}, v.Algorithms())

	bad := []struct {
		name string
		cfg  JWKSConfig
	}{
		{"no URL", JWKSConfig{}},
		{"not http", JWKSConfig{URL: "file:///etc/jwks.json"}},
		{"no host", JWKSConfig{URL: "https:///jwks.json"}},
		{"HS256", JWKSConfig{URL: srv.URL(), Algorithms: []string{"HS256"}}},
		{"none", JWKSConfig{URL: srv.URL(), Algorithms: []string{"none"}}},
		{"lowercase alg", JWKSConfig{URL: srv.URL(), Algorithms: []string{"rs256"}}},
		{"negative leeway", JWKSConfig{URL: srv.URL(), Leeway: -time.Second}},
		{"negative refresh interval", JWKSConfig{URL: srv.URL(), RefreshInterval: -time.Second}},
		{"negative rate limit", JWKSConfig{URL: srv.URL(), RefreshRateLimit: -time.Second}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWKSVerifier(t.Context(), tt.cfg)
			require.Error(t, err)
			require.Nil(t, v)
		})
	}

	// Only the configured algorithms: an ES256-only verifier refuses RS256.
	es := newTestJWKS(t, srv.URL(), JWKSConfig{Algorithms: []string{"ES256"}}, newFakeClock())
	_, err := es.Verify(t.Context(), srv.Sign(t, authtest.Claims("u1", time.Now()), srv.RSAKID()))
	require.ErrorIs(t, err, ErrBadSignature)
	_, err = es.Verify(t.Context(), srv.Sign(t, authtest.Claims("u1", time.Now()), srv.ECKID()))
	require.NoError(t, err)
}

// TestJWKSPublicConstructor exercises NewJWKSVerifier with the system
// clock and default HTTP client.
func TestJWKSPublicConstructor(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	v, err := NewJWKSVerifier(t.Context(), JWKSConfig{URL: srv.URL(), Issuer: testIssuer, Logger: quietLog})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	c := authtest.Claims("user_2abc", time.Now())
	c["iss"] = testIssuer
	user, err := v.Verify(t.Context(), srv.Sign(t, c, srv.ECKID()))
	require.NoError(t, err)
	require.Equal(t, "user_2abc", user)
}

// TestJWKSRotationAfterUnknownKID: an unknown kid (anyone can send one)
// spends the unknown-kid refresh; the issuer then publishes a new key. A
// token of the new key is refused only until the minimum refresh interval
// (30 s by default) has passed since that refresh, then accepted, whatever
// came before. The clock is injected: no sleeps.
func TestJWKSRotationAfterUnknownKID(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  JWKSConfig
		min  time.Duration
	}{
		{"default (30 s)", JWKSConfig{}, 30 * time.Second},
		{"configured", JWKSConfig{RefreshRateLimit: 10 * time.Second}, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := authtest.NewJWKSServer(t)
			clock := newFakeClock()
			v := newTestJWKS(t, srv.URL(), tc.cfg, clock)
			ghost := authtest.SignWith(t, jwt.SigningMethodES256, mustEC(t), "ghost", authtest.Claims("mallory", clock.Now()))
			_, err := v.Verify(t.Context(), ghost)
			require.ErrorIs(t, err, ErrBadSignature)
			require.Equal(t, 2, srv.Requests(), "the unknown kid refreshed once")

			newRSA, _ := srv.Rotate()
			tok := srv.Sign(t, authtest.Claims("u_new", clock.Now()), newRSA)
			_, err = v.Verify(t.Context(), tok)
			require.ErrorIs(t, err, ErrBadSignature, "within the interval the refresh is rate-limited")
			clock.Advance(tc.min - time.Second)
			_, err = v.Verify(t.Context(), tok)
			require.ErrorIs(t, err, ErrBadSignature)
			require.Equal(t, 2, srv.Requests())

			clock.Advance(time.Second)
			user, err := v.Verify(t.Context(), tok)
			require.NoError(t, err, "the rotation must be picked up once the interval has passed")
			require.Equal(t, "u_new", user)
			require.Equal(t, 3, srv.Requests())
		})
	}
}
