package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("auth-test-secret")

// sign builds a token by hand with golang-jwt, for claims MintHS256 does
// not write.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// rawToken assembles a token from a header and claims JSON, signed with
// HS256 and secret.
func rawToken(header, claims string, secret []byte) string {
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(m.Sum(nil))
}

func TestMintAndVerify(t *testing.T) {
	now := time.Now()
	tok, err := MintHS256(testSecret, "user_123", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewHS256Verifier(testSecret).Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != "user_123" {
		t.Fatalf("user id = %q, want user_123", got)
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now()
	mint := func(secret []byte, user string, ttl time.Duration, at time.Time) string {
		tok, err := MintHS256(secret, user, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := mint(testSecret, "u1", time.Hour, now)
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"three garbage parts", "a.b.c", ErrMalformed},
		{"four parts", valid + ".x", ErrMalformed},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), ErrMalformed},
		{"claims not JSON", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[2], ErrMalformed},
		{"expired", mint(testSecret, "u1", time.Hour, now.Add(-2*time.Hour)), ErrExpired},
		{"expired beyond leeway", mint(testSecret, "u1", time.Minute, now.Add(-time.Minute-Leeway-2*time.Second)), ErrExpired},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "u1", "exp": now.Add(2 * time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}), ErrNotYetValid},
		{"wrong secret", mint([]byte("another secret"), "u1", time.Hour, now), ErrBadSignature},
		{"tampered claims", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":9999999999}`)) + "." + parts[2], ErrBadSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", ErrBadSignature},
		{"HS512 with the secret", sign(t, jwt.SigningMethodHS512, testSecret, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}), ErrBadSignature},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}), ErrBadSignature},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}), ErrBadSignature},
		{"unknown alg", rawToken(`{"alg":"XY99","typ":"JWT"}`, `{"sub":"u1","exp":9999999999}`, testSecret), ErrInvalid},
		{"no exp", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "u1"}), ErrInvalid},
		{"no sub", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), ErrMissingSubject},
		{"empty sub", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "", "exp": now.Add(time.Hour).Unix()}), ErrMissingSubject},
		{"sub with NUL", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "u\x001", "exp": now.Add(time.Hour).Unix()}), ErrInvalid},
		{"sub too long", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": strings.Repeat("u", MaxSubjectBytes+1), "exp": now.Add(time.Hour).Unix()}), ErrInvalid},
	}
	v := NewHS256Verifier(testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %q, %v; want %v", got, err, tt.want)
			}
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v does not wrap ErrRejected", err)
			}
			if got != "" {
				t.Fatalf("user id %q returned with an error", got)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	now := time.Now()
	// Expired by less than the leeway: still accepted.
	tok, err := MintHS256(testSecret, "u1", time.Minute, now.Add(-time.Minute-Leeway/2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHS256Verifier(testSecret).Verify(context.Background(), tok); err != nil {
		t.Fatalf("token expired within the leeway was refused: %v", err)
	}
}

func TestVerifyInjectedClock(t *testing.T) {
	issued := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tok, err := MintHS256(testSecret, "u1", time.Hour, issued)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ts time.Time) *Verifier { return newHS256Verifier(testSecret, func() time.Time { return ts }) }
	if _, err := at(issued.Add(59*time.Minute)).Verify(context.Background(), tok); err != nil {
		t.Fatalf("valid at 59m: %v", err)
	}
	if _, err := at(issued.Add(time.Hour+Leeway+time.Second)).Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp+leeway+1s: %v, want ErrExpired", err)
	}
}

func TestVerifyNoSecret(t *testing.T) {
	// A token signed with an empty key must not pass a verifier that was
	// given no secret.
	tok := sign(t, jwt.SigningMethodHS256, []byte{}, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix()})
	_, err := NewHS256Verifier(nil).Verify(context.Background(), tok)
	if !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Verify with no secret = %v, want ErrNoSecret", err)
	}
	if errors.Is(err, ErrRejected) {
		t.Fatal("ErrNoSecret must not count as a rejection of the token")
	}
}

func TestVerifierCopiesSecret(t *testing.T) {
	secret := []byte("mutable secret")
	v := NewHS256Verifier(secret)
	tok, err := MintHS256([]byte("mutable secret"), "u1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	copy(secret, "XXXXXXX")
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("changing the caller's slice changed the verifier: %v", err)
	}
}

func TestMintErrors(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		secret []byte
		user   string
		ttl    time.Duration
	}{
		{"no secret", nil, "u1", time.Hour},
		{"no user", testSecret, "", time.Hour},
		{"control character", testSecret, "u\n1", time.Hour},
		{"user too long", testSecret, strings.Repeat("u", MaxSubjectBytes+1), time.Hour},
		{"zero ttl", testSecret, "u1", 0},
		{"negative ttl", testSecret, "u1", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := MintHS256(tt.secret, tt.user, tt.ttl, now); err == nil {
				t.Fatalf("MintHS256 = %q, nil; want an error", tok)
			}
		})
	}
}

func TestMintClaims(t *testing.T) {
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	tok, err := MintHS256(testSecret, "user_x", 90*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header := decodeSegment(t, parts[0])
	if header["alg"] != "HS256" {
		t.Fatalf("alg = %v, want HS256", header["alg"])
	}
	claims := decodeSegment(t, parts[1])
	if claims["sub"] != "user_x" || claims["iat"] != float64(now.Unix()) || claims["exp"] != float64(now.Add(90*time.Minute).Unix()) {
		t.Fatalf("claims = %v", claims)
	}
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// FuzzVerify feeds arbitrary tokens to the verifier. It must never panic,
// and it may accept a token only when an independent HMAC-SHA256 check
// with the secret agrees and the header names HS256.
func FuzzVerify(f *testing.F) {
	now := time.Now()
	good, err := MintHS256(testSecret, "fuzz-user", time.Hour, now)
	if err != nil {
		f.Fatal(err)
	}
	expired, _ := MintHS256(testSecret, "fuzz-user", time.Minute, now.Add(-time.Hour))
	other, _ := MintHS256([]byte("other"), "fuzz-user", time.Hour, now)
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		good, expired, other,
		"", ".", "..", "...", "a.b.c", "a.b", good + ".",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + parts[2] + "A",
		strings.ToUpper(good),
		rawToken(`{"alg":"HS256"}`, `{"sub":"x","exp":9999999999}`, testSecret),
		rawToken(`{"alg":"HS256"}`, `{"sub":"x","exp":"9999999999"}`, testSecret),
		rawToken(`{"alg":"HS256"}`, `{"sub":7,"exp":9999999999}`, testSecret),
		rawToken(`{"alg":"none"}`, `{"sub":"x","exp":9999999999}`, testSecret),
		rawToken(`{"alg":"HS256"}`, `{"sub":"x","exp":1e400}`, testSecret),
		rawToken(`{"alg":"HS256"}`, `{"sub":"x","exp":9999999999,"nbf":-1e30}`, testSecret),
		rawToken(`{"alg":"HS256"}`, `[]`, testSecret),
		rawToken(`null`, `null`, testSecret),
	} {
		f.Add(seed)
	}
	v := NewHS256Verifier(testSecret)
	f.Fuzz(func(t *testing.T, token string) {
		user, err := v.Verify(context.Background(), token)
		if err != nil {
			if user != "" {
				t.Fatalf("user %q returned with error %v", user, err)
			}
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v does not wrap ErrRejected", err)
			}
			return
		}
		if user == "" {
			t.Fatal("accepted a token with an empty user")
		}
		p := strings.Split(token, ".")
		if len(p) != 3 {
			t.Fatalf("accepted a token with %d parts", len(p))
		}
		sig, err := base64.RawURLEncoding.DecodeString(p[2])
		if err != nil {
			t.Fatalf("accepted a token whose signature is not base64url: %v", err)
		}
		m := hmac.New(sha256.New, testSecret)
		m.Write([]byte(p[0] + "." + p[1]))
		if !hmac.Equal(sig, m.Sum(nil)) {
			t.Fatalf("accepted a token not signed with the secret: %q", token)
		}
		hdr, err := base64.RawURLEncoding.DecodeString(p[0])
		if err != nil {
			t.Fatalf("accepted a token whose header is not base64url: %v", err)
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "HS256" {
			t.Fatalf("accepted a token with header %q", hdr)
		}
	})
}
