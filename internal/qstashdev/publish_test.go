package qstashdev

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/upstash/qstash-go"
)

func TestPublishDeliveredAndSigned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dest := b.dest.srv.URL + "/api/workers?job=a%20b&x=1"

	res, err := b.client.PublishJSON(qstash.PublishJSONOptions{Url: dest, Body: map[string]any{"hello": "world"}})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(res.MessageId, "msg_"), res.MessageId)
	require.False(t, res.Deduplicated)

	msg, err := b.client.Messages().Get(res.MessageId)
	require.NoError(t, err)
	require.Equal(t, dest, msg.Url)
	require.Equal(t, http.MethodPost, msg.Method)
	require.Equal(t, `{"hello":"world"}`, msg.Body)
	require.EqualValues(t, DefaultRetries, msg.MaxRetries)
	require.Equal(t, start.UnixMilli(), msg.NotBefore)
	require.Equal(t, start.UnixMilli(), msg.CreatedAt)

	b.runDue(t)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	b.dest.requireVerified(t)
	r := reqs[0]
	require.Equal(t, dest, r.URL, "delivered to the destination exactly as published")
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, `{"hello":"world"}`, string(r.Body))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, "Upstash-QStash", r.Header.Get("User-Agent"))
	require.Equal(t, res.MessageId, r.Header.Get("Upstash-Message-Id"))
	require.Equal(t, "0", r.Header.Get("Upstash-Retried"))
	require.Equal(t, "127.0.0.1", r.Header.Get("Upstash-Caller-Ip"))
	require.Empty(t, r.Header.Get("Upstash-Schedule-Id"))
	require.Empty(t, r.Header.Get("Authorization"), "the QStash token is never forwarded")

	// The token's exact shape: HS256 JWT keyed with the current key.
	var c signatureClaims
	tok, err := jwt.ParseWithClaims(r.Header.Get("Upstash-Signature"), &c, func(*jwt.Token) (any, error) {
		return []byte(b.keys.CurrentSigningKey), nil
	}, jwt.WithValidMethods([]string{"HS256"}))
	require.NoError(t, err)
	require.Equal(t, "JWT", tok.Header["typ"])
	require.Equal(t, "Upstash", c.Issuer)
	require.Equal(t, dest, c.Subject)
	require.Equal(t, "k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=", c.Body)
	require.Equal(t, TokenLifetime, c.ExpiresAt.Sub(c.IssuedAt.Time))
	require.Equal(t, c.IssuedAt.Time, c.NotBefore.Time)
	require.True(t, strings.HasPrefix(c.ID, "jwt_"), c.ID)
	require.Empty(t, c.Audience)

	// Delivered messages are forgotten, as in QStash.
	_, err = b.client.Messages().Get(res.MessageId)
	require.ErrorContains(t, err, "not found")

	d := b.srv.Deliveries()
	require.Len(t, d, 1)
	require.Equal(t, StateDelivered, d[0].Outcome)
	require.Equal(t, http.StatusOK, d[0].Status)
	st := b.srv.Stats()
	require.Equal(t, 1, st.Published)
	require.Equal(t, 1, st.Delivered)
	require.Equal(t, 0, st.Pending)
}

func TestBodyHashVectors(t *testing.T) {
	t.Parallel()
	require.Equal(t, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=", BodyHash(nil))
	require.Equal(t, "k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg=", BodyHash([]byte(`{"hello":"world"}`)))
}

func TestSignatureVerifiesWithQStashGo(t *testing.T) {
	t.Parallel()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	now := time.Now()
	sig, err := Sign(keys.CurrentSigningKey, "https://example.com/api/workers", []byte("body"), now)
	require.NoError(t, err)
	recv := qstash.NewReceiver(keys.CurrentSigningKey, keys.NextSigningKey)
	require.NoError(t, recv.Verify(qstash.VerifyOptions{Signature: sig, Url: "https://example.com/api/workers", Body: "body"}))
	require.ErrorIs(t, recv.Verify(qstash.VerifyOptions{Signature: sig, Url: "https://example.com/api/workers/", Body: "body"}), qstash.ErrInvalidSignature)
	require.ErrorIs(t, recv.Verify(qstash.VerifyOptions{Signature: sig, Url: "https://example.com/api/workers", Body: "bodY"}), qstash.ErrInvalidSignature)
	other := qstash.NewReceiver(keys.NextSigningKey, keys.NextSigningKey)
	require.ErrorIs(t, other.Verify(qstash.VerifyOptions{Signature: sig, Body: "body"}), qstash.ErrInvalidSignature)

	_, err = Sign("", "https://example.com", nil, now)
	require.Error(t, err)
}

func TestDelayAndNotBefore(t *testing.T) {
	t.Parallel()
	b := setup(t)

	res, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/delay", Body: "d", Delay: "1m30s"})
	require.NoError(t, err)
	msg, err := b.client.Messages().Get(res.MessageId)
	require.NoError(t, err)
	require.Equal(t, start.Add(90*time.Second).UnixMilli(), msg.NotBefore)

	nb := start.Add(time.Hour).Unix()
	res2, err := b.client.Publish(qstash.PublishOptions{
		Url: b.dest.srv.URL + "/notbefore", Body: "n",
		NotBefore: strconv.FormatInt(nb, 10), Delay: "10s", // Not-Before wins over Delay
	})
	require.NoError(t, err)

	b.runDue(t)
	b.advance(t, 89*time.Second)
	require.Empty(t, b.dest.requests(), "nothing before the delay")
	b.advance(t, time.Second)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/delay", reqs[0].RequestURI)
	require.Equal(t, res.MessageId, reqs[0].Header.Get("Upstash-Message-Id"))

	b.advance(t, time.Hour-90*time.Second-time.Second)
	b.requireDestCount(t, 1, "Upstash-Not-Before not reached")
	b.advance(t, time.Second)
	reqs = b.dest.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "/notbefore", reqs[1].RequestURI)
	require.Equal(t, res2.MessageId, reqs[1].Header.Get("Upstash-Message-Id"))
	require.Equal(t, time.Unix(nb, 0).UTC(), b.srv.Deliveries()[1].At.UTC())
	b.dest.requireVerified(t)
}

func TestRetries(t *testing.T) {
	t.Parallel()

	t.Run("500s are retried with backoff until retries run out", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(int) (int, http.Header) { return http.StatusInternalServerError, nil })
		res, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/fail", Body: "x", Retries: qstash.RetryCount(2)})
		require.NoError(t, err)

		b.runDue(t)
		b.requireDestCount(t, 1)
		msg, err := b.client.Messages().Get(res.MessageId)
		require.NoError(t, err, "a retrying message is still gettable")
		require.Equal(t, start.Add(DefaultBackoff(1)).UnixMilli(), msg.NotBefore)

		b.advance(t, 12*time.Second) // backoff 1 is e^2.5 ≈ 12.18 s
		b.requireDestCount(t, 1)
		b.advance(t, time.Second)
		b.requireDestCount(t, 2)
		b.advance(t, 48*time.Hour)
		reqs := b.dest.requests()
		require.Len(t, reqs, 3, "1 attempt + 2 retries")
		for i, r := range reqs {
			require.Equal(t, strconv.Itoa(i), r.Header.Get("Upstash-Retried"))
			require.Equal(t, res.MessageId, r.Header.Get("Upstash-Message-Id"))
		}
		b.dest.requireVerified(t)
		d := b.srv.Deliveries()
		require.Equal(t, []MessageState{StateRetry, StateRetry, StateFailed}, []MessageState{d[0].Outcome, d[1].Outcome, d[2].Outcome})
		require.Equal(t, d[1].At.Add(DefaultBackoff(2)), d[2].At)
		dlq := b.srv.DeadLetters()
		require.Len(t, dlq, 1)
		require.Equal(t, res.MessageId, dlq[0].ID)
		require.Equal(t, StateFailed, dlq[0].State)
		_, err = b.client.Messages().Get(res.MessageId)
		require.Error(t, err)
		require.Equal(t, 1, b.srv.Stats().Failed)
	})

	t.Run("default is 3 retries", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(int) (int, http.Header) { return http.StatusBadGateway, nil })
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
		require.NoError(t, err)
		b.advance(t, 72*time.Hour)
		b.requireDestCount(t, 4)
	})

	t.Run("zero retries means one attempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(int) (int, http.Header) { return http.StatusInternalServerError, nil })
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", Retries: qstash.RetryCount(0)})
		require.NoError(t, err)
		b.advance(t, 72*time.Hour)
		b.requireDestCount(t, 1)
	})

	t.Run("489 with Upstash-NonRetryable-Error is not retried", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(int) (int, http.Header) {
			return 489, http.Header{"Upstash-Nonretryable-Error": {"true"}}
		})
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", Retries: qstash.RetryCount(5)})
		require.NoError(t, err)
		b.advance(t, 72*time.Hour)
		b.requireDestCount(t, 1)
		require.Len(t, b.srv.DeadLetters(), 1)
	})

	t.Run("489 without the header is an ordinary failure", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(int) (int, http.Header) { return 489, nil })
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", Retries: qstash.RetryCount(1)})
		require.NoError(t, err)
		b.advance(t, time.Hour)
		b.requireDestCount(t, 2)
	})

	t.Run("Retry-After sets the next attempt and success stops retrying", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.dest.setRespond(func(n int) (int, http.Header) {
			if n == 0 {
				return http.StatusServiceUnavailable, http.Header{"Retry-After": {"5"}}
			}
			return http.StatusNoContent, nil
		})
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
		require.NoError(t, err)
		b.runDue(t)
		b.advance(t, 4*time.Second)
		b.requireDestCount(t, 1)
		b.advance(t, time.Second)
		b.requireDestCount(t, 2)
		b.advance(t, 72*time.Hour)
		b.requireDestCount(t, 2)
		require.Equal(t, 1, b.srv.Stats().Delivered)
	})

	t.Run("unreachable destination is retried", func(t *testing.T) {
		t.Parallel()
		// A dialer that always fails stands in for a dead host (a closed
		// test server's port may be reused by another parallel test).
		dead := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("connection refused (test dialer)")
		}}}
		b := setup(t, func(c *Config) {
			c.Backoff = func(int) time.Duration { return time.Minute }
			c.HTTPClient = dead
		})
		_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", Retries: qstash.RetryCount(1)})
		require.NoError(t, err)
		b.advance(t, time.Minute)
		d := b.srv.Deliveries()
		require.Len(t, d, 2)
		require.Zero(t, d[0].Status)
		require.Contains(t, d[0].Err, "connection refused")
		require.Equal(t, start.Add(time.Minute), d[1].At)
		require.Equal(t, StateFailed, d[1].Outcome)
	})
}

func TestDeduplication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", DeduplicationId: "job-42"}
	first, err := b.client.Publish(opts)
	require.NoError(t, err)
	second, err := b.client.Publish(opts)
	require.NoError(t, err)
	require.Equal(t, first.MessageId, second.MessageId)
	require.True(t, second.Deduplicated)

	status, body := b.raw(t, http.MethodPost, "/v2/publish/"+b.dest.srv.URL+"/hook", http.Header{"Upstash-Deduplication-Id": {"job-42"}}, "x")
	require.Equal(t, http.StatusAccepted, status)
	require.JSONEq(t, `{"messageId":"`+first.MessageId+`","deduplicated":true}`, string(body))

	b.runDue(t)
	b.requireDestCount(t, 1)
	// Still deduplicated after delivery, within the window.
	third, err := b.client.Publish(opts)
	require.NoError(t, err)
	require.True(t, third.Deduplicated)
	b.runDue(t)
	b.requireDestCount(t, 1)

	// The window is 10 minutes.
	b.advance(t, DeduplicationWindow)
	fourth, err := b.client.Publish(opts)
	require.NoError(t, err)
	require.False(t, fourth.Deduplicated)
	require.NotEqual(t, first.MessageId, fourth.MessageId)
	b.runDue(t)
	b.requireDestCount(t, 2)

	// Content-based deduplication.
	cb := qstash.PublishOptions{Url: b.dest.srv.URL + "/cb", Body: "same", ContentBasedDeduplication: true}
	c1, err := b.client.Publish(cb)
	require.NoError(t, err)
	c2, err := b.client.Publish(cb)
	require.NoError(t, err)
	require.Equal(t, c1.MessageId, c2.MessageId)
	cb.Body = "different"
	c3, err := b.client.Publish(cb)
	require.NoError(t, err)
	require.NotEqual(t, c1.MessageId, c3.MessageId)

	st := b.srv.Stats()
	require.Equal(t, 4, st.Published)
	require.Equal(t, 4, st.Deduplicated)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x", Delay: "10m"})
	require.NoError(t, err)
	require.NoError(t, b.client.Messages().Cancel(res.MessageId))
	b.advance(t, 24*time.Hour)
	require.Empty(t, b.dest.requests())
	_, err = b.client.Messages().Get(res.MessageId)
	require.ErrorContains(t, err, "not found")
	require.ErrorContains(t, b.client.Messages().Cancel(res.MessageId), "not found")

	var ids []string
	for range 3 {
		r, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "y", Delay: "1h"})
		require.NoError(t, err)
		ids = append(ids, r.MessageId)
	}
	n, err := b.client.Messages().CancelMany(ids[:2])
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = b.client.Messages().CancelAll()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.advance(t, 24*time.Hour)
	require.Empty(t, b.dest.requests())
	require.Equal(t, 4, b.srv.Stats().Cancelled)
}

func TestCancelRetryingMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.dest.setRespond(func(int) (int, http.Header) { return http.StatusInternalServerError, nil })
	res, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Body: "x"})
	require.NoError(t, err)
	b.runDue(t)
	require.NoError(t, b.client.Messages().Cancel(res.MessageId))
	b.advance(t, 72*time.Hour)
	b.requireDestCount(t, 1)
}

func TestForwardHeadersAndMethod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Publish(qstash.PublishOptions{
		Url: b.dest.srv.URL + "/fwd", Body: "payload", Method: "PUT", ContentType: "text/plain",
		Headers: map[string]string{"X-Foo": "bar", "Upstash-Forward-X-Already": "prefixed"},
	})
	require.NoError(t, err)
	b.runDue(t)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	b.dest.requireVerified(t)
	r := reqs[0]
	require.Equal(t, http.MethodPut, r.Method)
	require.Equal(t, "bar", r.Header.Get("X-Foo"))
	require.Equal(t, "prefixed", r.Header.Get("X-Already"))
	require.Equal(t, "text/plain", r.Header.Get("Content-Type"))
	for k := range r.Header {
		require.False(t, strings.HasPrefix(k, "Upstash-Forward-"), "header %s leaked with its prefix", k)
	}
	require.Empty(t, r.Header.Get("Upstash-Method"))

	status, body := b.raw(t, http.MethodPost, "/v2/publish/"+b.dest.srv.URL+"/hook", http.Header{"Upstash-Method": {"TRACE"}}, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(body), "Upstash-Method")
}

func TestPublishErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name   string
		path   string
		header http.Header
		want   string
	}{
		{"url group", "/v2/publish/my-group", nil, "http:// or https://"},
		{"api destination", "/v2/publish/api/llm", nil, "http:// or https://"},
		{"bad delay", "/v2/publish/" + b.dest.srv.URL + "/hook", http.Header{"Upstash-Delay": {"10x"}}, "Upstash-Delay"},
		{"bad not-before", "/v2/publish/" + b.dest.srv.URL + "/hook", http.Header{"Upstash-Not-Before": {"tomorrow"}}, "Upstash-Not-Before"},
		{"bad retries", "/v2/publish/" + b.dest.srv.URL + "/hook", http.Header{"Upstash-Retries": {"-1"}}, "Upstash-Retries"},
	}
	for _, tc := range cases {
		status, body := b.raw(t, http.MethodPost, tc.path, tc.header, "")
		require.Equal(t, http.StatusBadRequest, status, tc.name)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(body, &e), tc.name)
		require.Contains(t, e.Error, tc.want, tc.name)
	}
	_, err := b.client.Publish(qstash.PublishOptions{Url: b.dest.srv.URL + "/hook", Delay: "soon"})
	require.ErrorContains(t, err, "invalid Upstash-Delay")
	require.Equal(t, 0, b.srv.Stats().Published)
}

func TestBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := b.client.Batch([]qstash.BatchOptions{
		{Url: b.dest.srv.URL + "/a", Body: "a", Headers: map[string]string{"X-N": "1"}},
		{Url: b.dest.srv.URL + "/b", Body: "b", Delay: "1m"},
	})
	require.NoError(t, err)
	require.Len(t, res, 2)
	b.runDue(t)
	b.requireDestCount(t, 1)
	require.Equal(t, "1", b.dest.requests()[0].Header.Get("X-N"))
	b.advance(t, time.Minute)
	reqs := b.dest.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, res[1][0].MessageId, reqs[1].Header.Get("Upstash-Message-Id"))
	b.dest.requireVerified(t)
}
