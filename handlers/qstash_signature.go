package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/upstash/qstash-go"
)

// DefaultQStashClockTolerance is the leeway on a QStash token's exp and nbf.
const DefaultQStashClockTolerance = 5 * time.Second

// QStashSignatureConfig configures QStashSignatureAuth.
type QStashSignatureConfig struct {
	// CurrentSigningKey and NextSigningKey are QStash's two signing keys
	// (QSTASH_CURRENT_SIGNING_KEY, QSTASH_NEXT_SIGNING_KEY). A token
	// verifies with either; at least one must be set. An empty key never
	// verifies anything.
	CurrentSigningKey string
	NextSigningKey    string
	// URL is the exact URL QStash calls, compared byte for byte with the
	// token's sub: PUBLIC_URL + "/api/workers" unless configured otherwise
	// (behind a proxy, the public URL, not the one this server sees).
	// Required.
	URL string
	// Tolerance is the clock leeway on exp and nbf. Defaults to
	// DefaultQStashClockTolerance.
	Tolerance time.Duration
}

// QStashSignatureAuth accepts calls signed by QStash: an Upstash-Signature
// JWT that verifies with the current or next signing key (HS256), issued by
// Upstash, for cfg.URL, with an exp that has not passed and a body claim
// equal to the SHA-256 of the raw body. A call without the header is left
// to the other credentials; a call with a bad one is refused with 401
// invalid_signature.
func QStashSignatureAuth(cfg QStashSignatureConfig) (WorkerAuthFunc, error) {
	if cfg.CurrentSigningKey == "" && cfg.NextSigningKey == "" {
		return nil, errors.New("handlers: QStash signature check needs QSTASH_CURRENT_SIGNING_KEY or QSTASH_NEXT_SIGNING_KEY")
	}
	if cfg.URL == "" {
		return nil, errors.New("handlers: QStash signature check needs the URL QStash calls")
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultQStashClockTolerance
	}
	// qstash-go v1.0.0 verifies a token signed with an empty key when a key
	// is empty: never hand it one.
	current, next := cfg.CurrentSigningKey, cfg.NextSigningKey
	if current == "" {
		current = next
	}
	if next == "" {
		next = current
	}
	receiver := qstash.NewReceiver(current, next)
	refuse := func(why string) error {
		return apiError(http.StatusUnauthorized, CodeInvalidSignature, "the Upstash-Signature is invalid: "+why)
	}
	return func(r *http.Request, body []byte) error {
		sig := r.Header.Get("Upstash-Signature")
		if sig == "" {
			return ErrNoCredentials
		}
		if len(sig) > 8<<10 {
			return refuse("too long")
		}
		// qstash-go checks exp only when present; QStash always sends it.
		var claims jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(sig, &claims); err != nil {
			return refuse("not a JWT")
		}
		if claims.ExpiresAt == nil {
			return refuse("no expiry")
		}
		err := receiver.Verify(qstash.VerifyOptions{Signature: sig, Url: cfg.URL, Body: string(body), Tolerance: cfg.Tolerance})
		if err != nil {
			// qstash-go gives no detail: signature, issuer, URL, expiry or
			// body hash.
			return refuse(fmt.Sprintf("wrong key, issuer, URL (want %s), expired, or the body does not match", cfg.URL))
		}
		return nil
	}, nil
}
