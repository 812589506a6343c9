package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
)

// TestPayloadNumbersPostgresCannotStore: a number literal Postgres's JSONB
// refuses (a zero with a huge exponent, issue 9's 0e-20000) is 400
// invalid_payload on every backend, not 503 on Postgres and 201 on
// SQLite; the edges that both store are accepted and read back as the
// same number; and a payload whose numbers grow past the payload limit
// once written out in full (as Postgres stores them) is 413 on both.
func TestPayloadNumbersPostgresCannotStore(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		create := func(payload string) string {
			return fmt.Sprintf(`{"type":"echo","payload":{"text":"x","temperature":%s}}`, payload)
		}
		for _, lit := range []string{"0e-20000", "0E-16384", "-0.0e+1073741823", "0e-10000", "0e10000", "0e99999"} {
			before := bb.counts(t)
			rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs", create(lit))
			eb := requireError(t, rec, http.StatusBadRequest, "invalid_payload")
			require.Contains(t, eb.Error.Message, "out of range", lit)
			require.Equal(t, before, bb.counts(t), "%s: nothing is written", lit)
		}
		for _, tc := range []struct {
			lit  string
			want float64
		}{{"0e-9999", 0}, {"-0.0e9999", 0}, {"0.0e-999", 0}, {"5e-324", 5e-324}, {"1.7976931348623157e308", 1.7976931348623157e308}, {"-12.5E-1", -1.25}} {
			job := bb.createJob(t, "u1", create(tc.lit), http.StatusCreated)
			rec := bb.asUser(t, "u1", http.MethodGet, fmt.Sprintf("/api/jobs/%d", job.JobID), "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var got struct {
				Payload struct{ Temperature float64 } `json:"payload"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			require.Equal(t, tc.want, got.Payload.Temperature, tc.lit)
		}

		// 6 KB as sent, 310 KB as stored: over the 256 KiB payload limit.
		flood := `{"type":"echo","payload":{"text":"x","n":[` + strings.TrimSuffix(strings.Repeat("1e308,", 1000), ",") + `]}}`
		before := bb.counts(t)
		requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs", flood), http.StatusRequestEntityTooLarge, "payload_too_large")
		require.Equal(t, before, bb.counts(t))
	})
}
