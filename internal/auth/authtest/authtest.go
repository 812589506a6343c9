// Package authtest serves a JSON Web Key Set from an httptest server and
// signs tokens with its keys, for tests of code that verifies user tokens
// with auth.JWKSVerifier (handlers, app wiring, attack suites).
//
//	srv := authtest.NewJWKSServer(t)             // RSA "rsa-1" + P-256 "ec-1"
//	v, _ := auth.NewJWKSVerifier(t.Context(), auth.JWKSConfig{URL: srv.URL()})
//	tok := srv.Sign(t, authtest.Claims("user_1", time.Now()), srv.RSAKID())
//	srv.Rotate()                                 // new keys published, old ones dropped
//	n := srv.Requests()                          // JWKS fetches so far
//
// It does not import package auth, so auth's own tests can use it.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// JWKSPath is the path the server serves the key set on (Clerk's).
const JWKSPath = "/.well-known/jwks.json"

// RSABits is the size of the RSA keys made.
const RSABits = 2048

// JWKSServer is an httptest server publishing a JWKS of one RSA (RS256)
// and one P-256 (ES256) key. It remembers every key it ever made, so tokens
// can still be signed with a key it no longer publishes. It is safe for
// concurrent use.
type JWKSServer struct {
	srv      *httptest.Server
	requests atomic.Int64

	mu        sync.Mutex
	keys      map[string]signingKey // every key made, by kid
	published []string              // kids served now
	rsaKID    string
	ecKID     string
	gen       int
	status    int // 0: serve the set; else answer with this status
}

type signingKey struct {
	method jwt.SigningMethod
	priv   crypto.Signer
}

// NewJWKSServer starts a server with a fresh RSA and EC key. It is closed
// when the test ends.
func NewJWKSServer(t testing.TB) *JWKSServer {
	t.Helper()
	s := &JWKSServer{keys: make(map[string]signingKey)}
	s.rotate()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// URL is the JWKS URL.
func (s *JWKSServer) URL() string { return s.srv.URL + JWKSPath }

// Close stops the server; fetches then fail to connect.
func (s *JWKSServer) Close() { s.srv.Close() }

// Requests is how many requests for the key set the server has had
// (including those answered with SetStatus's error).
func (s *JWKSServer) Requests() int { return int(s.requests.Load()) }

// RSAKID is the kid of the RSA key published now.
func (s *JWKSServer) RSAKID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rsaKID
}

// ECKID is the kid of the EC key published now.
func (s *JWKSServer) ECKID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ecKID
}

// Rotate makes a new RSA and EC key, publishes them instead of the current
// ones and returns their kids. The old keys can still sign (for tests that
// old tokens are refused once the verifier refetched the set).
func (s *JWKSServer) Rotate() (rsaKID, ecKID string) {
	s.rotate()
	return s.RSAKID(), s.ECKID()
}

func (s *JWKSServer) rotate() {
	rsaKey, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		panic(fmt.Sprintf("authtest: RSA key: %v", err))
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("authtest: EC key: %v", err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.rsaKID = fmt.Sprintf("rsa-%d", s.gen)
	s.ecKID = fmt.Sprintf("ec-%d", s.gen)
	s.keys[s.rsaKID] = signingKey{jwt.SigningMethodRS256, rsaKey}
	s.keys[s.ecKID] = signingKey{jwt.SigningMethodES256, ecKey}
	s.published = []string{s.rsaKID, s.ecKID}
}

// SetStatus makes the server answer every request with status and no key
// set (e.g. http.StatusServiceUnavailable), or serve the set again with 0
// or http.StatusOK.
func (s *JWKSServer) SetStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == http.StatusOK {
		status = 0
	}
	s.status = status
}

// Published reports whether kid is in the key set served now.
func (s *JWKSServer) Published(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.published, kid)
}

// PublicKey returns the public key of any key the server made (published
// or not), or nil.
func (s *JWKSServer) PublicKey(kid string) crypto.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[kid]
	if !ok {
		return nil
	}
	return k.priv.Public()
}

// PublicKeyPEM returns kid's public key as a PKIX "PUBLIC KEY" PEM block,
// the bytes an algorithm-confusion attack uses as an HMAC secret.
func (s *JWKSServer) PublicKeyPEM(t testing.TB, kid string) []byte {
	t.Helper()
	pub := s.PublicKey(kid)
	if pub == nil {
		t.Fatalf("authtest: no key %q", kid)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("authtest: marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Sign returns claims signed with the server's key kid (RS256 for an RSA
// key, ES256 for an EC key), with kid in the header. kid may be a key the
// server no longer publishes.
func (s *JWKSServer) Sign(t testing.TB, claims jwt.Claims, kid string) string {
	t.Helper()
	s.mu.Lock()
	k, ok := s.keys[kid]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("authtest: the server never had key %q", kid)
	}
	return SignWith(t, k.method, k.priv, kid, claims)
}

// SignHeader is Sign with extra header parameters (such as crit), set
// after alg and kid and signed over like them.
func (s *JWKSServer) SignHeader(t testing.TB, claims jwt.Claims, kid string, header map[string]any) string {
	t.Helper()
	s.mu.Lock()
	k, ok := s.keys[kid]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("authtest: the server never had key %q", kid)
	}
	tok := jwt.NewWithClaims(k.method, claims)
	tok.Header["kid"] = kid
	for name, v := range header {
		tok.Header[name] = v
	}
	signed, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("authtest: sign: %v", err)
	}
	return signed
}

// SignWith signs claims with any method and key, putting kid in the header
// unless it is empty. For forged tokens: unpublished keys, "none", HMAC
// with a public key.
func SignWith(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("authtest: sign: %v", err)
	}
	return s
}

// Claims returns valid claims for sub at now: iat now, exp an hour later.
// Add iss, aud, azp and others to the map as a test needs.
func Claims(sub string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": sub,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

func (s *JWKSServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != JWKSPath {
		http.NotFound(w, r)
		return
	}
	s.requests.Add(1)
	s.mu.Lock()
	status := s.status
	var set jwkset.JWKSMarshal
	for _, kid := range s.published {
		k := s.keys[kid]
		jwk, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.ALG(k.method.Alg()), USE: jwkset.UseSig},
		})
		if err != nil {
			s.mu.Unlock()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}
