package handlers_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
)

const (
	qsCurrent = "sig_currentKeyForTests000000000000"
	qsNext    = "sig_nextKeyForTests00000000000000000"
	qsURL     = "https://jobhook.example.com/api/workers"
)

type qsToken struct {
	key    string
	alg    jwt.SigningMethod
	iss    string
	sub    string
	body   string
	exp    time.Duration // from now; 0 leaves exp out
	nbf    time.Duration
	noBody bool
}

func (q qsToken) sign(t testing.TB) string {
	t.Helper()
	now := time.Now()
	sum := sha256.Sum256([]byte(q.body))
	claims := jwt.MapClaims{"iss": q.iss, "sub": q.sub, "iat": now.Unix(), "nbf": now.Add(q.nbf).Unix(), "jti": "jwt_test"}
	if !q.noBody {
		claims["body"] = base64.URLEncoding.EncodeToString(sum[:])
	}
	if q.exp != 0 {
		claims["exp"] = now.Add(q.exp).Unix()
	}
	alg := q.alg
	if alg == nil {
		alg = jwt.SigningMethodHS256
	}
	s, err := jwt.NewWithClaims(alg, claims).SignedString([]byte(q.key))
	require.NoError(t, err)
	return s
}

func good() qsToken {
	return qsToken{key: qsCurrent, iss: "Upstash", sub: qsURL, body: `{"jobId":1}`, exp: 5 * time.Minute}
}

func TestQStashSignature(t *testing.T) {
	check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, NextSigningKey: qsNext, URL: qsURL})
	require.NoError(t, err)
	const body = `{"jobId":1}`
	for _, tc := range []struct {
		name  string
		token func() string
		body  string
		ok    bool
	}{
		{"current key", func() string { return good().sign(t) }, body, true},
		{"next key (rotation)", func() string { q := good(); q.key = qsNext; return q.sign(t) }, body, true},
		{"empty body", func() string { q := good(); q.body = ""; return q.sign(t) }, "", true},
		{"forged key", func() string { q := good(); q.key = "sig_attacker"; return q.sign(t) }, body, false},
		{"empty key", func() string { q := good(); q.key = ""; return q.sign(t) }, body, false},
		{"expired", func() string { q := good(); q.exp = -time.Minute; return q.sign(t) }, body, false},
		{"not yet valid", func() string { q := good(); q.nbf = time.Minute; return q.sign(t) }, body, false},
		{"no exp", func() string { q := good(); q.exp = 0; return q.sign(t) }, body, false},
		{"tampered body", func() string { return good().sign(t) }, `{"jobId":2}`, false},
		{"no body claim", func() string { q := good(); q.noBody = true; return q.sign(t) }, body, false},
		{"wrong URL", func() string { q := good(); q.sub = qsURL + "/"; return q.sign(t) }, body, false},
		{"wrong issuer", func() string { q := good(); q.iss = "Mallory"; return q.sign(t) }, body, false},
		{"alg none", func() string {
			q := good()
			s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": "Upstash", "sub": qsURL, "exp": time.Now().Add(time.Minute).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
			require.NoError(t, err)
			_ = q
			return s
		}, body, false},
		{"garbage", func() string { return "not.a.jwt" }, body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/workers", strings.NewReader(tc.body))
			req.Header.Set("Upstash-Signature", tc.token())
			err := check(req, []byte(tc.body))
			if tc.ok {
				require.NoError(t, err)
				return
			}
			var ae *handlers.APIError
			require.True(t, errors.As(err, &ae), "got %v", err)
			require.Equal(t, http.StatusUnauthorized, ae.Status)
			require.Equal(t, "invalid_signature", ae.Code)
		})
	}

	req := httptest.NewRequest(http.MethodPost, "/api/workers", nil)
	require.ErrorIs(t, check(req, nil), handlers.ErrNoCredentials, "no header: the other credentials decide")
}

func TestQStashSignatureNeverTrustsAnEmptyKey(t *testing.T) {
	_, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{URL: qsURL})
	require.Error(t, err, "no keys at all is a configuration error")

	// Only the current key set: a token signed with the empty string must
	// not pass as the "next" key.
	check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, URL: qsURL})
	require.NoError(t, err)
	q := good()
	q.key = ""
	req := httptest.NewRequest(http.MethodPost, "/api/workers", strings.NewReader(q.body))
	require.Error(t, check(req, []byte(q.body)))
	req.Header.Set("Upstash-Signature", q.sign(t))
	require.Error(t, check(req, []byte(q.body)))
}

// TestQStashRefusalLeavesQueueUntouched goes through the HTTP layer: a bad
// signature is 401 invalid_signature and nothing is drained, even with a
// valid bearer secret not sent.
func TestQStashRefusalLeavesQueueUntouched(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, NextSigningKey: qsNext, URL: qsURL})
		require.NoError(t, err)
		bb := setup(t, b, func(cfg *handlers.Config) { cfg.WorkerAuth = []handlers.WorkerAuthFunc{check} })
		bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
		before := bb.counts(t)

		q := good()
		q.exp = -time.Minute
		rec := bb.do(t, request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(q.body),
			headers: map[string]string{"Upstash-Signature": q.sign(t)}})
		requireError(t, rec, http.StatusUnauthorized, "invalid_signature")
		require.Empty(t, bb.drainer.Calls())
		require.Equal(t, before, bb.counts(t))

		rec = bb.do(t, request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(good().body),
			headers: map[string]string{"Upstash-Signature": good().sign(t)}})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Len(t, bb.drainer.Calls(), 1)
	})
}

// FuzzQStashSignature: whatever the header and body, the check never
// panics and accepts only a token signed with one of the keys for this URL
// and body.
func FuzzQStashSignature(f *testing.F) {
	f.Add(good().sign(f), `{"jobId":1}`)
	f.Add("", "")
	f.Add("a.b.c", "x")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJVcHN0YXNoIn0.", "{}")
	check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, NextSigningKey: qsNext, URL: qsURL})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, sig, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/workers", strings.NewReader(body))
		req.Header.Set("Upstash-Signature", sig)
		if err := check(req, []byte(body)); err == nil {
			// Only a real signature over this exact body can pass.
			parsed, perr := jwt.Parse(sig, func(*jwt.Token) (any, error) { return []byte(qsCurrent), nil })
			if perr != nil || !parsed.Valid {
				parsed, perr = jwt.Parse(sig, func(*jwt.Token) (any, error) { return []byte(qsNext), nil })
			}
			if perr != nil || !parsed.Valid {
				t.Fatalf("accepted a token not signed with either key: %q", sig)
			}
		}
	})
}
