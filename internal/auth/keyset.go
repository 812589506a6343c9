package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
)

// keySource is the jwkset.Storage behind a JWKSVerifier's keyfunc: the
// cached keys (the embedded memory storage) and the fetches that replace
// them. At most one fetch runs at a time; callers that need one while it
// runs wait for it instead of starting another.
type keySource struct {
	*jwkset.MemoryJWKSet

	url       string
	client    *http.Client
	timeout   time.Duration
	life      context.Context
	now       func() time.Time
	rateLimit time.Duration
	log       *slog.Logger

	mu         sync.Mutex
	loaded     bool       // a fetch has succeeded
	lastErr    error      // the latest fetch's error; nil after a success
	unknown    time.Time  // when an unknown kid last started a fetch
	unknownSet bool       // whether unknown is set
	inflight   *fetchCall // the running fetch, or nil
	fetches    int        // fetches started, for tests
}

var _ jwkset.Storage = (*keySource)(nil)

// fetchCall is one fetch; err is set before done is closed.
type fetchCall struct {
	done chan struct{}
	err  error
}

// wait returns the fetch's error, or ctx's if ctx ends first.
func (c *fetchCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KeyRead returns the key with the given kid. A kid that is not cached
// starts a fetch (or joins the running one) unless an unknown kid already
// started one less than rateLimit ago. It returns an error wrapping
// jwkset.ErrKeyNotFound when the key set, fresh or rate-limited, lacks the
// kid, and one wrapping ErrJWKSUnavailable when no key set could be had.
func (s *keySource) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.MemoryJWKSet.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	call, loaded, lastErr := s.startForUnknownKID()
	if call == nil {
		if !loaded {
			if lastErr == nil {
				lastErr = errors.New("no key set fetched yet")
			}
			return jwkset.JWK{}, fmt.Errorf("%w: %w", ErrJWKSUnavailable, lastErr)
		}
		return jwkset.JWK{}, fmt.Errorf("%w (refresh rate-limited)", err)
	}
	if err := call.wait(ctx); err != nil {
		return jwkset.JWK{}, fmt.Errorf("%w: %w", ErrJWKSUnavailable, err)
	}
	return s.MemoryJWKSet.KeyRead(ctx, kid)
}

// startForUnknownKID returns the running fetch, or starts one if the rate
// limit allows, or returns nil with the cache's state.
func (s *keySource) startForUnknownKID() (call *fetchCall, loaded bool, lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight, s.loaded, s.lastErr
	}
	now := s.now()
	if s.unknownSet && now.Sub(s.unknown) < s.rateLimit {
		return nil, s.loaded, s.lastErr
	}
	s.unknown, s.unknownSet = now, true
	return s.startLocked(), s.loaded, s.lastErr
}

// fetchShared fetches the key set, or waits for the running fetch.
func (s *keySource) fetchShared(ctx context.Context) error {
	s.mu.Lock()
	call := s.inflight
	if call == nil {
		call = s.startLocked()
	}
	s.mu.Unlock()
	return call.wait(ctx)
}

// startLocked starts a fetch; s.mu must be held. The fetch runs on the
// verifier's lifetime context, so a caller that gives up does not cancel
// it for the others.
func (s *keySource) startLocked() *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	s.inflight = call
	go func() {
		err := s.fetch(s.life)
		s.mu.Lock()
		s.inflight = nil
		if err == nil {
			s.loaded, s.lastErr = true, nil
		} else {
			s.lastErr = err
		}
		call.err = err
		s.mu.Unlock()
		close(call.done)
	}()
	return call
}

// refreshLoop fetches every interval, first after delay, and sooner
// (failedFetchRetry) after a failure, until the verifier's life ends.
func (s *keySource) refreshLoop(delay, interval time.Duration) {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-s.life.Done():
			return
		case <-timer.C:
		}
		delay = interval
		if err := s.fetchShared(s.life); err != nil {
			if s.life.Err() != nil {
				return
			}
			s.log.Warn("auth: JWKS refresh failed; keeping the cached keys", "url", redactURL(s.url), "err", err)
			delay = min(failedFetchRetry, interval)
		}
		timer.Reset(delay)
	}
}

// fetch downloads the key set and replaces the cache with its usable
// signing keys. It fails, keeping the cache, on a transport error, a
// status other than 200, a body over MaxJWKSBytes, bad JSON, or a set with
// no usable key. Symmetric ("oct") keys, keys for encryption, keys without
// a kid and keys that do not parse are skipped.
func (s *keySource) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("JWKS fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("JWKS fetch: read body: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return fmt.Errorf("JWKS fetch: body larger than %d bytes", MaxJWKSBytes)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("JWKS fetch: not a JWK set: %w", err)
	}
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	for _, m := range set.Keys {
		if m.KID == "" || (m.USE != "" && m.USE != jwkset.UseSig) {
			continue
		}
		switch m.KTY {
		case jwkset.KtyRSA, jwkset.KtyEC, jwkset.KtyOKP:
		default:
			continue
		}
		// Private: false keeps only the public half of a key that was
		// published with its private parts by mistake.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: false}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		keys = append(keys, jwk)
	}
	if len(keys) == 0 {
		return fmt.Errorf("JWKS fetch: the set has no usable signing key (%d keys listed)", len(set.Keys))
	}
	return s.MemoryJWKSet.KeyReplaceAll(ctx, keys)
}
