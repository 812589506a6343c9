package qstashdev

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/upstash/qstash-go"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := qstash.NewClientWith(qstash.Options{Url: b.api.URL, Token: "wrong", Client: b.http})
	_, err := bad.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
	require.ErrorContains(t, err, "Unauthorized")
	_, err = bad.Schedules().List()
	require.ErrorContains(t, err, "Unauthorized")

	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic " + b.keys.Token, b.keys.Token} {
		status, body := b.raw(t, http.MethodGet, "/v2/schedules", http.Header{"Authorization": {auth}}, "")
		require.Equal(t, http.StatusUnauthorized, status, auth)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(body, &e))
		require.NotEmpty(t, e.Error)
	}
	require.Zero(t, b.srv.Stats().Published)

	// The token may also come as the qstash_token query parameter, which is
	// not part of the destination.
	q := "?qstash_token=" + strings.ReplaceAll(b.keys.Token, "=", "%3D")
	status, body := b.raw(t, http.MethodPost, "/v2/publish/"+b.dest.srv.URL+"/hook"+q, http.Header{"Authorization": nil}, "x")
	require.Equal(t, http.StatusOK, status, string(body))
	b.runDue(t)
	require.Equal(t, "/hook", b.dest.requests()[0].RequestURI)
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()

	t.Run("a signature made with the next key verifies", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *Config) { c.SignWithNextKey = true })
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
		require.NoError(t, err)
		b.runDue(t)
		b.dest.requireVerified(t)
		r := b.dest.requests()[0]
		current := qstash.NewReceiver(b.keys.CurrentSigningKey, b.keys.CurrentSigningKey)
		require.ErrorIs(t, current.Verify(qstash.VerifyOptions{Signature: r.Header.Get("Upstash-Signature"), Url: r.URL, Body: string(r.Body)}), qstash.ErrInvalidSignature,
			"signed with the next key, not the current one")
	})

	t.Run("keys API and rotation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		keys, err := b.client.Keys().Get()
		require.NoError(t, err)
		require.Equal(t, b.keys.CurrentSigningKey, keys.Current)
		require.Equal(t, b.keys.NextSigningKey, keys.Next)

		rotated, err := b.client.Keys().Rotate() // POST /v2/rotate
		require.NoError(t, err)
		require.Equal(t, b.keys.NextSigningKey, rotated.Current)
		require.NotEqual(t, b.keys.NextSigningKey, rotated.Next)

		// The app still has the old pair: the new current is its next key.
		_, err = b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
		require.NoError(t, err)
		b.runDue(t)
		b.dest.requireVerified(t)

		status, body := b.raw(t, http.MethodPost, "/v2/keys/rotate", nil, "")
		require.Equal(t, http.StatusOK, status)
		var again signingKeysJSON
		require.NoError(t, json.Unmarshal(body, &again))
		require.Equal(t, rotated.Next, again.Current)

		// Rolled twice without updating the app: rejected.
		_, err = b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "y"})
		require.NoError(t, err)
		b.dest.setRespond(nil)
		b.runDue(t)
		require.ErrorIs(t, b.dest.requests()[1].VerifyErr, qstash.ErrInvalidSignature)
		b.dest.setReceiver(qstash.NewReceiver(again.Current, again.Next))
		b.advance(t, time.Minute) // the retry carries a token signed with the new current key
		require.NoError(t, b.dest.requests()[2].VerifyErr)
	})
}

func TestTokenClock(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: start}
	b := setup(t, func(c *Config) { c.TokenClock = clock })
	_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
	require.NoError(t, err)
	b.runDue(t)
	var c signatureClaims
	_, err = jwt.ParseWithClaims(b.srv.Deliveries()[0].Header.Get("Upstash-Signature"), &c, func(*jwt.Token) (any, error) {
		return []byte(b.keys.CurrentSigningKey), nil
	}, jwt.WithTimeFunc(func() time.Time { return start }))
	require.NoError(t, err)
	require.Equal(t, start, c.IssuedAt.UTC())
	require.Equal(t, start.Add(TokenLifetime), c.ExpiresAt.UTC())
	// The wall-clock receiver sees a token from 2030: not yet valid.
	require.ErrorIs(t, b.dest.requests()[0].VerifyErr, qstash.ErrInvalidSignature)
}

func TestBackgroundLoop(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	srv, err := New(Config{
		Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey,
		Backoff:      func(int) time.Duration { return 10 * time.Millisecond },
		PollInterval: 50 * time.Millisecond,
		Logger:       slogForTest(t),
	})
	require.NoError(t, err)
	dest := newDestination(t, keys.CurrentSigningKey, keys.NextSigningKey)
	dest.setRespond(func(n int) (int, http.Header) {
		if n == 0 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()

	client := qstash.NewClientWith(qstash.Options{Url: "http://" + ln.Addr().String(), Token: keys.Token, Client: testHTTPClient(t)})
	res, err := client.Publish(qstash.PublishOptions{Url: dest.srv.URL + "/hook", Body: "x"})
	require.NoError(t, err)

	deliveries, err := srv.WaitForDeliveries(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, StateRetry, deliveries[0].Outcome)
	require.Equal(t, StateDelivered, deliveries[1].Outcome)
	require.Equal(t, res.MessageId, deliveries[1].MessageID)
	require.Equal(t, "1", deliveries[1].Header.Get("Upstash-Retried"))
	dest.requireVerified(t)
	require.Error(t, srv.Start(ctx), "already running")

	stop()
	require.NoError(t, <-served)
	require.NoError(t, srv.Close())
}

func TestAdvanceNeedsManualClock(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	srv, err := New(Config{Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey, Logger: slogForTest(t)})
	require.NoError(t, err)
	_, err = srv.Advance(context.Background(), time.Second)
	require.ErrorContains(t, err, "Advance")
	n, err := srv.RunDue(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := New(Config{CurrentSigningKey: "sig_a", NextSigningKey: "sig_b"})
	require.ErrorContains(t, err, "Token")
	_, err = New(Config{Token: "t", CurrentSigningKey: "sig_a"})
	require.ErrorContains(t, err, "NextSigningKey")
	_, err = New(Config{Token: "t", NextSigningKey: "sig_b"})
	require.ErrorContains(t, err, "CurrentSigningKey")
}

func TestMountedBelowPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mux := http.NewServeMux()
	mux.Handle("/qstash/", http.StripPrefix("/qstash", b.srv))
	mounted := httptest.NewServer(mux)
	t.Cleanup(mounted.Close)
	client := qstash.NewClientWith(qstash.Options{Url: mounted.URL + "/qstash", Token: b.keys.Token, Client: b.http})
	// ServeMux cleans "http://host" in the path to "http:/host" and
	// redirects the client there; the server restores the slash.
	id, err := client.Schedules().Create(qstash.ScheduleOptions{Cron: "* * * * *", Destination: b.dest.srv.URL + "/hook"})
	require.NoError(t, err)
	got, err := client.Schedules().Get(id)
	require.NoError(t, err)
	require.Equal(t, b.dest.srv.URL+"/hook", got.Destination)
	res, err := client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook?a=1", Body: "x"})
	require.NoError(t, err)
	b.runDue(t)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, res.MessageId, reqs[0].Header.Get("Upstash-Message-Id"))
	require.Equal(t, "/hook?a=1", reqs[0].RequestURI)
	b.dest.requireVerified(t)
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/v2/queues", http.StatusNotFound},
		{http.MethodGet, "/v2/publish/" + b.dest.srv.URL + "/hook", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v2/messages/msg_nope", http.StatusNotFound},
		{http.MethodPut, "/v2/messages/msg_nope", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v2/schedules/scd_nope", http.StatusNotFound},
		{http.MethodDelete, "/v2/schedules/scd_nope", http.StatusNotFound},
		{http.MethodPatch, "/v2/schedules/scd_nope/pause", http.StatusNotFound},
		{http.MethodPatch, "/v2/schedules/scd_nope/explode", http.StatusNotFound},
		{http.MethodPost, "/v2/schedules", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v2/keys", http.StatusOK},
		{http.MethodGet, "/v2/rotate", http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		status, body := b.raw(t, tc.method, tc.path, nil, "")
		require.Equal(t, tc.want, status, "%s %s: %s", tc.method, tc.path, body)
		if status >= 400 {
			var e struct{ Error string }
			require.NoError(t, json.Unmarshal(body, &e), "%s %s", tc.method, tc.path)
			require.NotEmpty(t, e.Error)
		}
	}
}

func TestGenerateKeys(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	sig := regexp.MustCompile(`^sig_[1-9A-HJ-NP-Za-km-z]{28}$`)
	require.Regexp(t, sig, keys.CurrentSigningKey)
	require.Regexp(t, sig, keys.NextSigningKey)
	require.NotEqual(t, keys.CurrentSigningKey, keys.NextSigningKey)
	raw, err := base64.StdEncoding.DecodeString(keys.Token)
	require.NoError(t, err)
	var tok struct{ UserID, Password string }
	require.NoError(t, json.Unmarshal(raw, &tok))
	require.NotEmpty(t, tok.UserID)
	require.NotEmpty(t, tok.Password)
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvToken, "tok")
	t.Setenv(EnvCurrentSigningKey, "sig_current")
	t.Setenv(EnvNextSigningKey, "sig_next")
	cfg, generated, err := ConfigFromEnv()
	require.NoError(t, err)
	require.False(t, generated)
	require.Equal(t, "tok", cfg.Token)
	require.Equal(t, "sig_current", cfg.CurrentSigningKey)
	require.Equal(t, "sig_next", cfg.NextSigningKey)

	t.Setenv(EnvNextSigningKey, "")
	cfg, generated, err = ConfigFromEnv()
	require.NoError(t, err)
	require.True(t, generated)
	require.Equal(t, "sig_current", cfg.CurrentSigningKey)
	require.True(t, strings.HasPrefix(cfg.NextSigningKey, "sig_"))
	_, err = New(cfg)
	require.NoError(t, err)
}

func TestParseQStashDuration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"50s", 50 * time.Second, true},
		{"10m", 10 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"1d10h30m", 34*time.Hour + 30*time.Minute, true},
		{"0s", 0, true},
		{"10", 0, false},
		{"s", 0, false},
		{"10ms", 0, false},
		{"1.5h", 0, false},
		{"-5s", 0, false},
		{"99999999999999999d", 0, false},
	}
	for _, tc := range cases {
		got, err := parseQStashDuration(tc.in)
		if !tc.ok {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, header, value string
		want                time.Duration
		ok                  bool
	}{
		{"none", "", "", 0, false},
		{"seconds", "Retry-After", "10", 10 * time.Second, true},
		{"zero", "Retry-After", "0", 0, true},
		{"date", "Retry-After", now.Add(time.Minute).Format(http.TimeFormat), time.Minute, true},
		{"go duration", "X-RateLimit-Reset", "6m5s", 6*time.Minute + 5*time.Second, true},
		{"requests", "X-RateLimit-Reset-Requests", "3", 3 * time.Second, true},
		{"over a day", "Retry-After", "86401", 0, false},
		{"garbage", "Retry-After", "soon", 0, false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.header != "" {
			h.Set(tc.header, tc.value)
		}
		got, ok := retryAfter(h, now)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
}

func TestDefaultBackoff(t *testing.T) {
	t.Parallel()
	want := []time.Duration{12 * time.Second, 2*time.Minute + 28*time.Second, 30*time.Minute + 8*time.Second, 6*time.Hour + 7*time.Minute + 6*time.Second, 24 * time.Hour, 24 * time.Hour}
	for i, w := range want {
		require.Equal(t, w, DefaultBackoff(i+1).Truncate(time.Second), "retry %d", i+1)
	}
}

func TestDestinationPublishesDuringDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.dest.setRespond(func(n int) (int, http.Header) {
		if n == 0 {
			// Like a worker that enqueues a follow-up: call back into the
			// server while its delivery is in flight.
			if _, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/second", Body: "2"}); err != nil {
				return http.StatusInternalServerError, nil
			}
		}
		return http.StatusOK, nil
	})
	_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/first", Body: "1"})
	require.NoError(t, err)
	n, err := b.srv.RunDue(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "the follow-up is delivered in the same RunDue")
	reqs := b.dest.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "/second", reqs[1].RequestURI)
}

func TestBackgroundLoopConcurrentPublishes(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	srv, err := New(Config{Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey, Logger: slogForTest(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	api := httptest.NewServer(srv)
	t.Cleanup(api.Close)
	dest := newDestination(t, keys.CurrentSigningKey, keys.NextSigningKey)
	client := qstash.NewClientWith(qstash.Options{Url: api.URL, Token: keys.Token, Client: testHTTPClient(t)})

	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := client.Publish(qstash.PublishOptions{Url: dest.srv.URL + "/hook", Body: strings.Repeat("x", i)})
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	st, err := srv.WaitFor(ctx, func(s Stats) bool { return s.Delivered == n })
	require.NoError(t, err)
	require.Equal(t, n, st.Attempts, "each message delivered exactly once")
	require.Len(t, dest.requests(), n)
	dest.requireVerified(t)
}

func TestTransportWithoutSocket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client := qstash.NewClientWith(qstash.Options{Url: "http://qstashdev.invalid", Token: b.keys.Token, Client: &http.Client{Transport: b.srv.Transport()}})
	res, err := client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook?q=1", Body: "x"})
	require.NoError(t, err)
	msg, err := client.Messages().Get(res.MessageId)
	require.NoError(t, err)
	require.Equal(t, b.dest.srv.URL+"/hook?q=1", msg.Url)
	bad := qstash.NewClientWith(qstash.Options{Url: "http://qstashdev.invalid", Token: "nope", Client: &http.Client{Transport: b.srv.Transport()}})
	_, err = bad.Schedules().List()
	require.ErrorContains(t, err, "Unauthorized")
	b.runDue(t)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/hook?q=1", reqs[0].RequestURI)
	require.Equal(t, "127.0.0.1", reqs[0].Header.Get("Upstash-Caller-Ip"))
	b.dest.requireVerified(t)
}
