package qstashclient_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/jobs"
)

func TestPublishCancelAndTriggerAgainstQStashAPI(t *testing.T) {
	// qstash-go lets QSTASH_URL override the URL it is given; the client
	// must still talk to the configured one.
	t.Setenv("QSTASH_URL", "http://qstash.invalid")
	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	clock := jobs.NewManualClock(time.Now())
	dev, err := qstashdev.New(qstashdev.Config{Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey, Clock: clock})
	require.NoError(t, err)
	srv := httptest.NewServer(dev)
	defer srv.Close()

	c, err := qstashclient.New(qstashclient.Config{BaseURL: srv.URL + "/", Token: keys.Token, WorkerURL: "http://127.0.0.1:1/api/workers"})
	require.NoError(t, err)
	ctx := context.Background()
	at := clock.Now().Add(time.Hour)
	id, err := c.PublishAt(ctx, 42, at)
	require.NoError(t, err)
	m, ok := dev.Message(id)
	require.True(t, ok)
	require.Equal(t, at.Unix(), m.NotBefore.Unix())
	require.JSONEq(t, `{"jobId":42}`, string(m.Body))
	again, err := c.PublishAt(ctx, 42, at)
	require.NoError(t, err)
	require.Equal(t, id, again, "deduplicated on job and time")

	require.NoError(t, c.Cancel(ctx, id))
	m, ok = dev.Message(id)
	require.False(t, ok && m.State != qstashdev.StateCancelled, "cancelled")

	require.NoError(t, c.Trigger(ctx, 1500*time.Millisecond))
	msgs := dev.Messages()
	require.NotEmpty(t, msgs)
	last := msgs[len(msgs)-1]
	require.Equal(t, clock.Now().Add(2*time.Second).Unix(), last.NotBefore.Unix(), "a delay rounds up to whole seconds")

	wakeAt := clock.Now().Add(7*time.Second + 900*time.Millisecond)
	require.NoError(t, c.TriggerAt(ctx, wakeAt))
	msgs = dev.Messages()
	var wake *qstashdev.Message
	for i := range msgs {
		if string(msgs[i].Body) == `{"trigger":"wake"}` {
			wake = &msgs[i]
		}
	}
	require.NotNil(t, wake, "a wake-up trigger is published")
	require.Equal(t, wakeAt.Unix(), wake.NotBefore.Unix(), "Not-Before is the second in which at falls")
	require.Equal(t, time.Unix(wakeAt.Unix(), 0), wake.NotBefore, "whole seconds")

	_, err = qstashclient.New(qstashclient.Config{Token: "", WorkerURL: "x"})
	require.Error(t, err)
	bad, err := qstashclient.New(qstashclient.Config{BaseURL: srv.URL, Token: "wrong", WorkerURL: "http://x/api/workers"})
	require.NoError(t, err)
	_, err = bad.PublishAt(ctx, 1, at)
	require.Error(t, err, "a wrong token is refused")
}
