package qstashdev

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/upstash/qstash-go"
)

func TestSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dest := b.dest.srv.URL + "/api/workers"
	b.advance(t, 30*time.Second) // 00:00:30, between ticks

	id, err := b.client.Schedules().Create(qstash.ScheduleOptions{
		Cron: "*/5 * * * *", Destination: dest, Body: `{"drain":true}`, ContentType: "application/json",
		Retries: qstash.RetryCount(1), Headers: map[string]string{"X-Source": "cron"},
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(id, "scd_"), id)

	list, err := b.client.Schedules().List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, id, list[0].Id)

	got, err := b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.Equal(t, "*/5 * * * *", got.Cron)
	require.Equal(t, dest, got.Destination)
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, `{"drain":true}`, got.Body)
	require.EqualValues(t, 1, got.Retries)
	require.False(t, got.IsPaused)
	require.Equal(t, start.Add(30*time.Second).UnixMilli(), got.CreatedAt)
	require.Equal(t, start.Add(5*time.Minute).UnixMilli(), got.NextScheduleTime)
	require.Equal(t, []string{"cron"}, got.Header["X-Source"])

	b.advance(t, 4*time.Minute+29*time.Second) // 00:04:59
	require.Empty(t, b.dest.requests())
	b.advance(t, time.Second) // 00:05:00
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, id, reqs[0].Header.Get("Upstash-Schedule-Id"))
	require.Equal(t, "cron", reqs[0].Header.Get("X-Source"))
	require.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
	require.Equal(t, `{"drain":true}`, string(reqs[0].Body))
	require.Equal(t, start.Add(5*time.Minute), b.srv.Deliveries()[0].At)

	// Each tick fires once, with a new message id, as the clock advances.
	b.advance(t, 15*time.Minute) // ticks 00:10, 00:15, 00:20
	reqs = b.dest.requests()
	require.Len(t, reqs, 4)
	seen := map[string]bool{}
	for i, r := range reqs {
		require.Equal(t, id, r.Header.Get("Upstash-Schedule-Id"))
		seen[r.Header.Get("Upstash-Message-Id")] = true
		require.Equal(t, start.Add(time.Duration(i+1)*5*time.Minute), b.srv.Deliveries()[i].At)
	}
	require.Len(t, seen, 4)
	b.dest.requireVerified(t)

	got, err = b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.Equal(t, start.Add(20*time.Minute).UnixMilli(), got.LastScheduleTime)
	require.Equal(t, start.Add(25*time.Minute).UnixMilli(), got.NextScheduleTime)
	require.Len(t, got.LastScheduleStates, 1)
	for _, state := range got.LastScheduleStates {
		require.Equal(t, "SUCCESS", state)
	}

	// Paused: ticks pass without deliveries; pausing twice is harmless.
	require.NoError(t, b.client.Schedules().Pause(id))
	require.NoError(t, b.client.Schedules().Pause(id))
	got, err = b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.True(t, got.IsPaused)
	b.advance(t, time.Hour)
	b.requireDestCount(t, 4, "a paused schedule does not fire")

	require.NoError(t, b.client.Schedules().Resume(id))
	got, err = b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.False(t, got.IsPaused)
	b.advance(t, 5*time.Minute)
	b.requireDestCount(t, 5)

	require.NoError(t, b.client.Schedules().Delete(id))
	_, err = b.client.Schedules().Get(id)
	require.ErrorContains(t, err, "not found")
	list, err = b.client.Schedules().List()
	require.NoError(t, err)
	require.Empty(t, list)
	b.advance(t, time.Hour)
	b.requireDestCount(t, 5)
	require.Equal(t, 5, b.srv.Stats().ScheduleFirings)
}

func TestScheduleCreateJSONDelayAndMethod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, err := b.client.Schedules().CreateJSON(qstash.ScheduleJSONOptions{
		Cron: "0 * * * *", Destination: b.dest.srv.URL + "/hourly?src=cron", Body: map[string]any{"n": 1},
		Delay: "2m", Method: "PUT",
	})
	require.NoError(t, err)
	got, err := b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.EqualValues(t, 120, got.Delay)
	require.Equal(t, b.dest.srv.URL+"/hourly?src=cron", got.Destination)

	b.advance(t, time.Hour+time.Minute) // tick at 01:00, delivery due 01:02
	require.Empty(t, b.dest.requests())
	b.advance(t, time.Minute)
	reqs := b.dest.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, http.MethodPut, reqs[0].Method)
	require.Equal(t, "/hourly?src=cron", reqs[0].RequestURI)
	require.Equal(t, start.Add(time.Hour+2*time.Minute), b.srv.Deliveries()[0].At)
	b.dest.requireVerified(t)
}

func TestScheduleUpsertWithScheduleID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := http.Header{"Upstash-Cron": {"*/10 * * * *"}, "Upstash-Schedule-Id": {"jobhook.drain"}}
	status, body := b.raw(t, http.MethodPost, "/v2/schedules/"+b.dest.srv.URL+"/api/workers", h, "")
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"scheduleId":"jobhook.drain"}`, string(body))

	h.Set("Upstash-Cron", "* * * * *")
	status, body = b.raw(t, http.MethodPost, "/v2/Schedules/"+b.dest.srv.URL+"/api/workers", h, "")
	require.Equal(t, http.StatusOK, status, string(body))
	list, err := b.client.Schedules().List()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "* * * * *", list[0].Cron)
	b.advance(t, 3*time.Minute)
	b.requireDestCount(t, 3)

	h.Set("Upstash-Schedule-Id", "bad id!")
	status, body = b.raw(t, http.MethodPost, "/v2/schedules/"+b.dest.srv.URL+"/api/workers", h, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(body), "Upstash-Schedule-Id")

	// Pause and resume also answer POST, as the docs say.
	status, _ = b.raw(t, http.MethodPost, "/v2/schedules/jobhook.drain/pause", nil, "")
	require.Equal(t, http.StatusOK, status)
	sc, ok := b.srv.Schedule("jobhook.drain")
	require.True(t, ok)
	require.True(t, sc.Paused)
}

func TestScheduleBadCron(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.Schedules().Create(qstash.ScheduleOptions{Cron: "every five minutes", Destination: b.dest.srv.URL + "/x"})
	require.ErrorContains(t, err, `invalid cron expression "every five minutes"`)

	for _, spec := range []string{"61 * * * *", "* * * *", "CRON_TZ=UTC", "CRON_TZ=Nowhere/City * * * * *"} {
		status, body := b.raw(t, http.MethodPost, "/v2/schedules/"+b.dest.srv.URL+"/x", http.Header{"Upstash-Cron": {spec}}, "")
		require.Equal(t, http.StatusBadRequest, status, spec)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal(body, &e), spec)
		require.Contains(t, e.Error, "cron expression", spec)
	}

	status, body := b.raw(t, http.MethodPost, "/v2/schedules/"+b.dest.srv.URL+"/x", nil, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(body), "Upstash-Cron header is required")
	require.Empty(t, b.srv.Schedules())
}

func TestScheduleImpossibleCronNeverFires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, err := b.client.Schedules().Create(qstash.ScheduleOptions{Cron: "0 0 30 2 *", Destination: b.dest.srv.URL + "/feb30"})
	require.NoError(t, err)
	got, err := b.client.Schedules().Get(id)
	require.NoError(t, err)
	require.Zero(t, got.NextScheduleTime)
	b.advance(t, 400*24*time.Hour)
	require.Empty(t, b.dest.requests())
}

func TestScheduleTimezonePrefix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Etc/GMT-1 is UTC+1, so 01:00 there is 00:00 UTC; the first tick after
	// the start (00:00 UTC) is the next day.
	_, err := b.client.Schedules().Create(qstash.ScheduleOptions{Cron: "CRON_TZ=Etc/GMT-1 0 1 * * *", Destination: b.dest.srv.URL + "/tz"})
	require.NoError(t, err)
	b.advance(t, 24*time.Hour)
	b.requireDestCount(t, 1)
	require.Equal(t, start.Add(24*time.Hour), b.srv.Deliveries()[0].At.UTC())
}
