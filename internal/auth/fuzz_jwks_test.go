package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jobhook/jobhook/internal/auth/authtest"
)

// FuzzJWKSVerify feeds arbitrary tokens to a JWKS verifier (behind the
// MultiVerifier, with the HS256 verifier beside it, as wired). It must
// never panic; every error must be a rejection (the JWKS server is up);
// and a token is accepted only when an independent check finds it signed
// by a key the server publishes (RS256 or ES256, with that key's kid) or
// by the HS256 secret, and the user is its sub. Seeds: the tokens below
// and testdata/fuzz/FuzzJWKSVerify.
func FuzzJWKSVerify(f *testing.F) {
	srv := authtest.NewJWKSServer(f)
	clock := newFakeClock()
	jwks := newTestJWKS(f, srv.URL(), JWKSConfig{}, clock)
	chain, err := NewMultiVerifier(jwks, NewHS256Verifier(testSecret))
	if err != nil {
		f.Fatal(err)
	}
	now := clock.Now()
	rsaKID, ecKID := srv.RSAKID(), srv.ECKID()
	claims := authtest.Claims("fuzz-user", now)
	rs := srv.Sign(f, claims, rsaKID)
	es := srv.Sign(f, claims, ecKID)
	hs, err := MintHS256(testSecret, "fuzz-dev", time.Hour, now)
	if err != nil {
		f.Fatal(err)
	}
	expired := srv.Sign(f, authtest.Claims("fuzz-user", now.Add(-2*time.Hour)), rsaKID)
	rp, ep := strings.Split(rs, "."), strings.Split(es, ".")
	for _, seed := range []string{
		rs, es, hs, expired,
		rp[0] + "." + rp[1] + ".",
		rp[0] + "." + ep[1] + "." + rp[2],
		ep[0] + "." + rp[1] + "." + ep[2],
		rp[0] + "." + rp[1] + "." + ep[2],
		rs + "A", strings.ToUpper(rs),
		authtest.SignWith(f, jwt.SigningMethodHS256, srv.PublicKeyPEM(f, rsaKID), rsaKID, claims),
		authtest.SignWith(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, rsaKID, claims),
		authtest.SignWith(f, jwt.SigningMethodES256, mustEC(f), ecKID, claims),
		authtest.SignWith(f, jwt.SigningMethodES256, mustEC(f), "unknown", claims),
		authtest.SignWith(f, jwt.SigningMethodES256, mustEC(f), "", claims),
		rawJWT(`{"alg":"RS256","kid":"`+rsaKID+`"}`, `{"sub":"x","exp":9999999999}`, rp[2]),
		rawJWT(`{"alg":"ES256","kid":"`+rsaKID+`"}`, `{"sub":"x","exp":9999999999}`, ep[2]),
		rawJWT(`{"alg":"RS256","kid":["`+rsaKID+`"]}`, `{"sub":"x","exp":9999999999}`, rp[2]),
		rawJWT(`{"alg":"RS256","alg":"none","kid":"`+rsaKID+`"}`, `{"sub":"x","exp":9999999999}`, ""),
		rawJWT(`{"alg":"RS256","kid":"`+rsaKID+`"}`, `{"sub":"x","exp":1e400}`, rp[2]),
		"", ".", "..", "a.b.c", strings.Repeat("A", MaxTokenBytes+1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		user, err := chain.Verify(t.Context(), token)
		if err != nil {
			if user != "" {
				t.Fatalf("user %q returned with error %v", user, err)
			}
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v is not a rejection though the JWKS is up", err)
			}
			return
		}
		if why := independentCheck(srv, token, user); why != "" {
			t.Fatalf("accepted %q as %q: %s", token, user, why)
		}
	})
}

// independentCheck verifies an accepted token without golang-jwt or
// keyfunc, and returns why it should not have been accepted, or "".
func independentCheck(srv *authtest.JWKSServer, token, user string) string {
	p := strings.Split(token, ".")
	if len(p) != 3 {
		return "not three parts"
	}
	dec := base64.RawURLEncoding
	rawHeader, err1 := dec.DecodeString(p[0])
	rawClaims, err2 := dec.DecodeString(p[1])
	sig, err3 := dec.DecodeString(p[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return "a part is not base64url: " + err.Error()
	}
	var h map[string]any
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return "header not JSON"
	}
	var c struct {
		Sub string   `json:"sub"`
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(rawClaims, &c); err != nil {
		return "claims not JSON"
	}
	if c.Sub != user {
		return "the user is not the sub"
	}
	if c.Exp == nil {
		return "no exp"
	}
	alg, _ := h["alg"].(string)
	kid, _ := h["kid"].(string)
	signed := []byte(p[0] + "." + p[1])
	digest := sha256.Sum256(signed)
	switch alg {
	case "HS256":
		m := hmac.New(sha256.New, testSecret)
		m.Write(signed)
		if !hmac.Equal(sig, m.Sum(nil)) {
			return "HS256 not signed with the secret"
		}
		return ""
	case "RS256":
		if !srv.Published(kid) {
			return "kid not published"
		}
		pub, ok := srv.PublicKey(kid).(*rsa.PublicKey)
		if !ok || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
			return "not signed by the RSA key of its kid"
		}
		return ""
	case "ES256":
		if !srv.Published(kid) {
			return "kid not published"
		}
		pub, ok := srv.PublicKey(kid).(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return "not an ES256 signature by an EC key"
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			return "not signed by the EC key of its kid"
		}
		return ""
	}
	return "alg " + alg + " accepted"
}
