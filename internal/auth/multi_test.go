package auth

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth/authtest"
)

// spyVerifier accepts every token it is given and records it.
type spyVerifier struct {
	algs []string
	user string

	mu    sync.Mutex
	calls int
}

func (s *spyVerifier) Verify(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.user, nil
}

func (s *spyVerifier) Algorithms() []string { return s.algs }

func (s *spyVerifier) take() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.calls
	s.calls = 0
	return n
}

// TestMultiVerifierRoutes: each token reaches only the verifier of its
// header's alg; a token whose alg nobody accepts reaches none.
func TestMultiVerifierRoutes(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	hs := &spyVerifier{algs: []string{"HS256"}, user: "from-hs256"}
	jw := &spyVerifier{algs: []string{"RS256", "ES256"}, user: "from-jwks"}
	m, err := NewMultiVerifier(hs, jw)
	require.NoError(t, err)
	require.Equal(t, []string{"HS256", "RS256", "ES256"}, m.Algorithms())

	now := time.Now()
	claims := authtest.Claims("u1", now)
	hsTok, err := MintHS256(testSecret, "u1", time.Hour, now)
	require.NoError(t, err)
	sig := strings.Split(hsTok, ".")[2]
	enc := base64.RawURLEncoding.EncodeToString

	tests := []struct {
		name        string
		token       string
		want        error
		user        string
		toHS, toJWK int
	}{
		{name: "HS256", token: hsTok, user: "from-hs256", toHS: 1},
		{name: "RS256", token: srv.Sign(t, claims, srv.RSAKID()), user: "from-jwks", toJWK: 1},
		{name: "ES256", token: srv.Sign(t, claims, srv.ECKID()), user: "from-jwks", toJWK: 1},
		{name: "HS256 signed with the RSA public key goes to HS256 only", token: authtest.SignWith(t, jwt.SigningMethodHS256, srv.PublicKeyPEM(t, srv.RSAKID()), srv.RSAKID(), claims), user: "from-hs256", toHS: 1},
		{name: "alg decided by the exact key alg", token: enc([]byte(`{"ALG":"RS256","alg":"HS256"}`)) + ".e30." + sig, user: "from-hs256", toHS: 1},
		{name: "alg none", token: authtest.SignWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims), want: ErrBadSignature},
		{name: "HS512", token: authtest.SignWith(t, jwt.SigningMethodHS512, testSecret, "", claims), want: ErrBadSignature},
		{name: "PS256", token: enc([]byte(`{"alg":"PS256"}`)) + ".e30." + sig, want: ErrBadSignature},
		{name: "EdDSA", token: enc([]byte(`{"alg":"EdDSA"}`)) + ".e30." + sig, want: ErrBadSignature},
		{name: "unknown alg", token: enc([]byte(`{"alg":"XY99"}`)) + ".e30." + sig, want: ErrInvalid},
		{name: "lowercase alg", token: enc([]byte(`{"alg":"hs256"}`)) + ".e30." + sig, want: ErrInvalid},
		{name: "no alg", token: enc([]byte(`{"typ":"JWT"}`)) + ".e30." + sig, want: ErrInvalid},
		{name: "alg not a string", token: enc([]byte(`{"alg":256}`)) + ".e30." + sig, want: ErrInvalid},
		{name: "header null", token: enc([]byte(`null`)) + ".e30." + sig, want: ErrInvalid},
		{name: "header an array", token: enc([]byte(`["HS256"]`)) + ".e30." + sig, want: ErrMalformed},
		{name: "header not base64", token: "!!!.e30." + sig, want: ErrMalformed},
		{name: "header padded", token: enc([]byte(`{"alg":"HS256"}`)) + "=.e30." + sig, want: ErrMalformed},
		{name: "two parts", token: "a.b", want: ErrMalformed},
		{name: "four parts", token: hsTok + ".x", want: ErrMalformed},
		{name: "empty", token: "", want: ErrMalformed},
		{name: "over MaxTokenBytes", token: hsTok + strings.Repeat("A", MaxTokenBytes), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := m.Verify(t.Context(), tt.token)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				require.ErrorIs(t, err, ErrRejected)
				require.Empty(t, user)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.user, user)
			}
			require.Equal(t, tt.toHS, hs.take(), "calls to the HS256 verifier")
			require.Equal(t, tt.toJWK, jw.take(), "calls to the JWKS verifier")
		})
	}
}

func TestNewMultiVerifierErrors(t *testing.T) {
	hs := NewHS256Verifier(testSecret)
	tests := []struct {
		name string
		vs   []AlgorithmVerifier
	}{
		{"no verifiers", nil},
		{"nil verifier", []AlgorithmVerifier{hs, nil}},
		{"algorithm claimed twice", []AlgorithmVerifier{hs, NewHS256Verifier([]byte("other"))}},
		{"claims none", []AlgorithmVerifier{&spyVerifier{algs: []string{"none"}}}},
		{"claims an empty alg", []AlgorithmVerifier{&spyVerifier{algs: []string{""}}}},
		{"claims nothing", []AlgorithmVerifier{&spyVerifier{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMultiVerifier(tt.vs...)
			require.Error(t, err)
			require.Nil(t, m)
		})
	}
}

// TestAlgorithmConfusion: an HMAC token whose secret is the public key of
// the JWKS, in every encoding an attacker might try, with and without the
// key's kid, is refused by every verifier and combination the server can
// be wired with; and a JWKS-signed token is refused by the HS256 verifier.
func TestAlgorithmConfusion(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	jwks := newTestJWKS(t, srv.URL(), JWKSConfig{}, clock)
	hs := NewHS256Verifier(testSecret)
	jwksAndHS, err := NewMultiVerifier(jwks, hs)
	require.NoError(t, err)
	hsAndJWKS, err := NewMultiVerifier(hs, jwks)
	require.NoError(t, err)
	jwksOnly, err := NewMultiVerifier(jwks)
	require.NoError(t, err)
	verifiers := map[string]TokenVerifier{
		"jwks": jwks, "hs256": hs, "multi(jwks,hs256)": jwksAndHS, "multi(hs256,jwks)": hsAndJWKS, "multi(jwks)": jwksOnly,
	}

	secrets := map[string][]byte{}
	for _, kid := range []string{srv.RSAKID(), srv.ECKID()} {
		pub := srv.PublicKey(kid)
		p := srv.PublicKeyPEM(t, kid)
		der, err := x509.MarshalPKIXPublicKey(pub)
		require.NoError(t, err)
		jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		require.NoError(t, err)
		one, err := json.Marshal(jwk.Marshal())
		require.NoError(t, err)
		set, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
		require.NoError(t, err)
		secrets[kid+" PKIX PEM"] = p
		secrets[kid+" PEM without newline"] = bytes.TrimSpace(p)
		secrets[kid+" DER"] = der
		secrets[kid+" JWK"] = one
		secrets[kid+" JWKS document"] = set
	}
	rsaPub := srv.PublicKey(srv.RSAKID())
	secrets["PKCS#1 PEM"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(asRSA(t, rsaPub))})
	secrets["modulus"] = asRSA(t, rsaPub).N.Bytes()

	methods := []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512}
	kids := []string{srv.RSAKID(), srv.ECKID(), ""}
	n := 0
	for secretName, secret := range secrets {
		for _, method := range methods {
			for _, kid := range kids {
				tok := authtest.SignWith(t, method, secret, kid, authtest.Claims("attacker", clock.Now()))
				for vName, v := range verifiers {
					user, err := v.Verify(t.Context(), tok)
					require.ErrorIs(t, err, ErrBadSignature, "%s with %s, kid %q, against %s", method.Alg(), secretName, kid, vName)
					require.Empty(t, user)
					n++
				}
			}
		}
	}
	t.Logf("%d confusion attempts refused", n)

	// The other way: a JWKS-signed token never passes the HS256 check.
	for _, kid := range []string{srv.RSAKID(), srv.ECKID()} {
		_, err := hs.Verify(t.Context(), srv.Sign(t, authtest.Claims("u1", clock.Now()), kid))
		require.ErrorIs(t, err, ErrBadSignature)
	}
}

func asRSA(t testing.TB, pub any) *rsa.PublicKey {
	t.Helper()
	k, ok := pub.(*rsa.PublicKey)
	require.True(t, ok, "not an RSA key: %T", pub)
	return k
}

// TestMultiVerifierWired: the JWKS and the HS256 development verifier
// together, as the server wires them.
func TestMultiVerifierWired(t *testing.T) {
	srv := authtest.NewJWKSServer(t)
	clock := newFakeClock()
	jwks := newTestJWKS(t, srv.URL(), JWKSConfig{Issuer: testIssuer}, clock)
	m, err := NewMultiVerifier(jwks, NewHS256Verifier(testSecret))
	require.NoError(t, err)

	hsTok, err := MintHS256(testSecret, "dev_user", time.Hour, time.Now())
	require.NoError(t, err)
	user, err := m.Verify(t.Context(), hsTok)
	require.NoError(t, err)
	require.Equal(t, "dev_user", user, "an HS256 token is not subject to the JWKS issuer check")

	c := authtest.Claims("user_clerk", clock.Now())
	c["iss"] = testIssuer
	user, err = m.Verify(t.Context(), srv.Sign(t, c, srv.RSAKID()))
	require.NoError(t, err)
	require.Equal(t, "user_clerk", user)

	// The JWKS goes down and rotates: RS256 tokens of the new key cannot
	// be checked (503), HS256 tokens still can.
	srv.SetStatus(http.StatusServiceUnavailable)
	newKID, _ := srv.Rotate()
	_, err = m.Verify(t.Context(), srv.Sign(t, c, newKID))
	require.ErrorIs(t, err, ErrJWKSUnavailable)
	require.NotErrorIs(t, err, ErrRejected)
	_, err = m.Verify(t.Context(), hsTok)
	require.NoError(t, err)
	require.Equal(t, 2, srv.Requests(), "construction, and the one refresh the new kid asked for")
}
