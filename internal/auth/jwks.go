package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Defaults of JWKSConfig.
const (
	// DefaultRefreshInterval is how often the JWKS is fetched in the
	// background.
	DefaultRefreshInterval = time.Hour
	// DefaultRefreshRateLimit is the least time between two fetches caused
	// by tokens whose kid is not in the cached key set
	// (AUTH_JWKS_MIN_REFRESH): a key the issuer publishes is accepted at
	// most this long after its first token, however many unknown kids
	// came before, while a flood of unknown kids costs one fetch per
	// interval.
	DefaultRefreshRateLimit = 30 * time.Second
	// DefaultJWKSTimeout bounds one JWKS fetch.
	DefaultJWKSTimeout = 10 * time.Second
	// MaxJWKSBytes is the largest JWKS document accepted.
	MaxJWKSBytes = 1 << 20
)

// failedFetchRetry is how soon the background loop tries again after a
// failed fetch (capped by the refresh interval). It does not depend on
// traffic, so it cannot be used to make the verifier hammer the JWKS URL.
const failedFetchRetry = 30 * time.Second

// ErrJWKSUnavailable is returned by JWKSVerifier.Verify when the key set
// needed to check a token could not be fetched (the JWKS URL is down,
// answers an error, or serves no usable key). It does not wrap ErrRejected:
// the token was not judged, so callers answer 503, not 401.
var ErrJWKSUnavailable = errors.New("auth: JWKS unavailable")

// keyChecks lists the JWS algorithms a JWKSVerifier can accept, each with
// the only kind of public key that may verify it. HMAC and "none" are
// absent on purpose: a JWKS holds public keys, and a public key must never
// be usable as an HMAC secret.
var keyChecks = map[string]func(key any) bool{
	"RS256": isRSA, "RS384": isRSA, "RS512": isRSA,
	"PS256": isRSA, "PS384": isRSA, "PS512": isRSA,
	"ES256": isEC(elliptic.P256()), "ES384": isEC(elliptic.P384()), "ES512": isEC(elliptic.P521()),
	"EdDSA": isEd25519,
}

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

func isRSA(key any) bool {
	k, ok := key.(*rsa.PublicKey)
	return ok && k.N != nil && k.N.BitLen() >= minRSABits
}

func isEC(curve elliptic.Curve) func(any) bool {
	return func(key any) bool {
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == curve
	}
}

func isEd25519(key any) bool {
	k, ok := key.(ed25519.PublicKey)
	return ok && len(k) == ed25519.PublicKeySize
}

// JWKSConfig configures a JWKSVerifier. Only URL is required.
type JWKSConfig struct {
	// URL of the JSON Web Key Set, e.g. Clerk's
	// https://<frontend-api>/.well-known/jwks.json. http and https are
	// accepted; use https in production.
	URL string
	// Issuer, when set, must equal the token's iss claim exactly.
	Issuer string
	// Audience, when set, must contain at least one of the token's aud
	// values (a token without aud is refused).
	Audience []string
	// AuthorizedParties, when set, must contain the token's azp claim if
	// the token has one (Clerk: azp is the Origin of the page that asked for
	// the token, and may be absent). Trailing slashes are ignored here.
	AuthorizedParties []string
	// Leeway is the clock skew allowed for exp and nbf. Default Leeway (5s).
	Leeway time.Duration
	// RefreshInterval is how often the key set is fetched in the background.
	// Default DefaultRefreshInterval (1h).
	RefreshInterval time.Duration
	// RefreshRateLimit is the least time between two fetches caused by a
	// token whose kid is not cached (key rotation), and so the longest a
	// newly published key can be refused. Default DefaultRefreshRateLimit
	// (30s).
	RefreshRateLimit time.Duration
	// HTTPClient fetches the key set. Default: a client with a
	// DefaultJWKSTimeout (10s) timeout. A fetch is also bounded by the
	// client's Timeout, or DefaultJWKSTimeout when it has none.
	HTTPClient *http.Client
	// Algorithms are the accepted JWS algorithms, from RS256, RS384, RS512,
	// PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA. Default RS256 and
	// ES256.
	Algorithms []string
	// Logger receives failed background fetches. Default slog.Default().
	Logger *slog.Logger
}

// JWKSVerifier checks asymmetrically signed JWTs (Clerk session tokens, or
// any OpenID provider's) against the keys of a JWKS URL.
//
// The key set is fetched once by NewJWKSVerifier, again every
// RefreshInterval in the background (sooner after a failure), and when a
// token names a kid the cache lacks, at most once per RefreshRateLimit;
// concurrent requests share one fetch. A fetch replaces the whole set, so a
// key the provider dropped stops verifying at the next fetch; a failed fetch
// keeps the previous keys.
//
// A token is accepted only when: it is at most MaxTokenBytes; its alg is one
// of the configured asymmetric algorithms; its header has no crit (RFC 7515
// §4.1.11: jobhook understands no extension); its header names a kid that is in
// the key set, whose key is of that algorithm's type (and whose JWK alg, if
// any, is that alg, and use, if any, is "sig"); the signature verifies; it
// has exp, not past (with leeway), and nbf, if any, not in the future, each
// of exp, nbf and iat a JSON number;
// iss, aud and azp pass the configured checks; and sub is a non-empty
// printable user id. It is safe for concurrent use.
type JWKSVerifier struct {
	parser  *jwt.Parser
	keyfunc keyfunc.Keyfunc
	algs    []string
	issuer  string
	aud     []string
	azp     []string
	cancel  context.CancelFunc
}

var _ AlgorithmVerifier = (*JWKSVerifier)(nil)

// NewJWKSVerifier checks cfg, fetches the key set once and starts the
// background refresh, which runs until ctx ends or Close is called; pass a
// context that lives as long as the verifier. A failed first fetch is not
// an error here (it is logged, retried, and Verify returns
// ErrJWKSUnavailable until a fetch succeeds); only a bad configuration is.
func NewJWKSVerifier(ctx context.Context, cfg JWKSConfig) (*JWKSVerifier, error) {
	return newJWKSVerifier(ctx, cfg, nil)
}

// newJWKSVerifier is NewJWKSVerifier with an injected clock (nil: the
// system clock), used for token times and the unknown-kid rate limit.
func newJWKSVerifier(ctx context.Context, cfg JWKSConfig, now func() time.Time) (*JWKSVerifier, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	timeout := DefaultJWKSTimeout
	if cfg.HTTPClient.Timeout > 0 {
		timeout = cfg.HTTPClient.Timeout
	}
	life, cancel := context.WithCancel(ctx)
	keys := &keySource{
		MemoryJWKSet: jwkset.NewMemoryStorage(),
		url:          cfg.URL,
		client:       cfg.HTTPClient,
		timeout:      timeout,
		life:         life,
		now:          now,
		rateLimit:    cfg.RefreshRateLimit,
		log:          cfg.Logger,
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:          life,
		Storage:      keys,
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS verifier: %w", err)
	}
	v := &JWKSVerifier{
		parser: jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithTimeFunc(now),
		),
		keyfunc: kf,
		algs:    cfg.Algorithms,
		issuer:  cfg.Issuer,
		aud:     cfg.Audience,
		azp:     cfg.AuthorizedParties,
		cancel:  cancel,
	}
	delay := cfg.RefreshInterval
	if err := keys.fetchShared(life); err != nil {
		keys.log.Warn("auth: JWKS first fetch failed; tokens cannot be checked until a fetch succeeds",
			"url", redactURL(cfg.URL), "err", err)
		delay = min(failedFetchRetry, cfg.RefreshInterval)
	}
	go keys.refreshLoop(delay, cfg.RefreshInterval)
	return v, nil
}

// normalize applies the defaults and checks cfg.
func (cfg JWKSConfig) normalize() (JWKSConfig, error) {
	var problems []string
	cfg.URL = strings.TrimSpace(cfg.URL)
	if u, err := url.Parse(cfg.URL); cfg.URL == "" {
		problems = append(problems, "a JWKS URL is required")
	} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("the JWKS URL %q is not an http(s) URL", redactURL(cfg.URL)))
	}
	cfg.Issuer = strings.TrimSpace(cfg.Issuer)
	cfg.Audience = cleanList(cfg.Audience, false)
	cfg.AuthorizedParties = cleanList(cfg.AuthorizedParties, true)
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = Leeway
	case cfg.Leeway < 0:
		problems = append(problems, "the leeway must not be negative")
	}
	switch {
	case cfg.RefreshInterval == 0:
		cfg.RefreshInterval = DefaultRefreshInterval
	case cfg.RefreshInterval < 0:
		problems = append(problems, "the refresh interval must be positive")
	}
	switch {
	case cfg.RefreshRateLimit == 0:
		cfg.RefreshRateLimit = DefaultRefreshRateLimit
	case cfg.RefreshRateLimit < 0:
		problems = append(problems, "the refresh rate limit must be positive")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultJWKSTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
	}
	var algs []string
	for _, a := range cfg.Algorithms {
		if _, ok := keyChecks[a]; !ok {
			problems = append(problems, fmt.Sprintf("algorithm %q cannot be used with a JWKS (use RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA)", a))
			continue
		}
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	cfg.Algorithms = algs
	if len(problems) > 0 {
		return cfg, fmt.Errorf("auth: JWKS verifier: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}

// cleanList trims the values of a configured list and drops empty ones
// (and, for origins, a trailing slash).
func cleanList(in []string, origins bool) []string {
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(s)
		if origins {
			s = strings.TrimRight(s, "/")
		}
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// redactURL drops the user info and query of a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// Algorithms returns the JWS algorithms the verifier accepts.
func (v *JWKSVerifier) Algorithms() []string { return slices.Clone(v.algs) }

// Close stops the background refresh. Verify keeps working with the cached
// keys but no longer fetches; a token with an unknown kid then yields
// ErrJWKSUnavailable.
func (v *JWKSVerifier) Close() { v.cancel() }

// jwksClaims are the claims a JWKSVerifier reads.
type jwksClaims struct {
	jwt.RegisteredClaims
	// AuthorizedParty is Clerk's (and OpenID Connect's) azp.
	AuthorizedParty string `json:"azp,omitempty"`
}

// UnmarshalJSON decodes the claims after checking that exp, nbf and iat
// are numbers.
func (c *jwksClaims) UnmarshalJSON(data []byte) error {
	if err := checkNumericDates(data); err != nil {
		return err
	}
	type plain jwksClaims // without this method
	return json.Unmarshal(data, (*plain)(c))
}

// errNoKey marks the failures to find a key that may verify a token: no
// kid, an unknown kid, or a key of another algorithm or use.
var errNoKey = errors.New("no key in the JWKS may verify this token")

// Verify checks the token and returns its sub. A refused token yields an
// error wrapping ErrRejected and one precise sentinel: ErrMalformed;
// ErrBadSignature (signature, alg not accepted, no/unknown kid, key of the
// wrong type); ErrExpired; ErrNotYetValid; ErrWrongIssuer, ErrWrongAudience
// or ErrWrongParty (each also ErrInvalid); ErrInvalid (no exp, a header
// with crit); ErrMalformed also for an exp, nbf or iat that is not a JSON
// number; ErrMissingSubject. When the key set could not be fetched the
// error wraps ErrJWKSUnavailable and not ErrRejected.
func (v *JWKSVerifier) Verify(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > MaxTokenBytes {
		return "", ErrMalformed
	}
	var claims jwksClaims
	_, err := v.parser.ParseWithClaims(token, &claims, v.keyFor(ctx))
	if err != nil {
		switch {
		case errors.Is(err, ErrJWKSUnavailable):
			return "", fmt.Errorf("auth: verify token: %w", err)
		case errors.Is(err, errNoKey):
			return "", fmt.Errorf("%w (%v)", ErrBadSignature, err)
		}
		return "", classify(err)
	}
	if v.issuer != "" && claims.Issuer != v.issuer {
		return "", fmt.Errorf("%w: got %q", ErrWrongIssuer, truncate(claims.Issuer))
	}
	if len(v.aud) > 0 && !slices.ContainsFunc(claims.Audience, func(a string) bool { return slices.Contains(v.aud, a) }) {
		return "", fmt.Errorf("%w: got %q", ErrWrongAudience, truncate(strings.Join(claims.Audience, ",")))
	}
	if len(v.azp) > 0 && claims.AuthorizedParty != "" && !slices.Contains(v.azp, claims.AuthorizedParty) {
		return "", fmt.Errorf("%w: got %q", ErrWrongParty, truncate(claims.AuthorizedParty))
	}
	if err := checkSubject(claims.Subject); err != nil {
		return "", err
	}
	return claims.Subject, nil
}

// truncate shortens a claim quoted in an error message.
func truncate(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}

// keyFor returns the jwt.Keyfunc for one Verify: it requires a kid, lets
// keyfunc look it up (refreshing on an unknown kid), and checks that the
// key is of the type the token's alg needs.
func (v *JWKSVerifier) keyFor(ctx context.Context) jwt.Keyfunc {
	lookup := v.keyfunc.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		if err := checkHeader(t); err != nil {
			return nil, err
		}
		kid, ok := t.Header[jwkset.HeaderKID].(string)
		if !ok || kid == "" {
			return nil, fmt.Errorf("%w: the token has no kid", errNoKey)
		}
		key, err := lookup(t)
		if err != nil {
			if errors.Is(err, ErrJWKSUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", errNoKey, err)
		}
		// The parser already refused an alg outside the configured list,
		// so keyChecks has it.
		if check := keyChecks[t.Method.Alg()]; check == nil || !check(key) {
			return nil, fmt.Errorf("%w: key %q (%T) cannot verify %s (wrong type, curve or size)", errNoKey, truncate(kid), key, t.Method.Alg())
		}
		return key, nil
	}
}
