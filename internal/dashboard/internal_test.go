package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                              "/dashboard",
		"/dashboard":                    "/dashboard",
		"/dashboard/jobs?status=failed": "/dashboard/jobs?status=failed",
		"/dashboard/jobs/12":            "/dashboard/jobs/12",
		"/dashboard/login":              "/dashboard",
		"/dashboard/../api/jobs":        "/dashboard",
		"/dashboardx":                   "/dashboard",
		"//evil.example/dashboard":      "/dashboard",
		"https://evil.example":          "/dashboard",
		`/dashboard/\evil`:              "/dashboard",
		"/api/jobs":                     "/dashboard",
	} {
		require.Equal(t, want, safeNext(next), next)
	}
}

func TestNiceCeil(t *testing.T) {
	for n, want := range map[int64]int64{0: 4, 3: 4, 4: 4, 5: 8, 17: 20, 41: 80, 399: 400, 401: 800} {
		require.Equal(t, want, niceCeil(n), n)
	}
}

// TestThroughputChart: one bar per non-empty part, scaled to the peak.
func TestThroughputChart(t *testing.T) {
	start := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	minutes := make([]jobs.MinuteCount, 60)
	for i := range minutes {
		minutes[i].Start = start.Add(time.Duration(i) * time.Minute)
	}
	minutes[10].Completed, minutes[10].Failed = 6, 2
	minutes[59].Cancelled = 1
	svg := string(throughputChart(minutes))
	require.Equal(t, 1, strings.Count(svg, `class="bar-completed"`))
	require.Equal(t, 1, strings.Count(svg, `class="bar-failed"`))
	require.Equal(t, 1, strings.Count(svg, `class="bar-cancelled"`))
	require.Contains(t, svg, "16:10: 6 completed")
	require.Contains(t, svg, ">8</text>", "the y axis tops at the peak")
	require.NotContains(t, svg, "style=", "no inline styles: the CSP allows none")
}

func TestCountTable(t *testing.T) {
	rows, totals := countTable([]jobs.StatusTypeCount{
		{Status: models.StatusFailed, Type: "b", Count: 2},
		{Status: models.StatusPending, Type: "a", Count: 1},
		{Status: models.StatusFailed, Type: "a", Count: 3},
	})
	require.Len(t, rows, 2)
	require.Equal(t, "a", rows[0].Type)
	require.Equal(t, int64(4), rows[0].Total)
	require.Equal(t, int64(5), totals[4]) // failed
}

func TestTraceParent(t *testing.T) {
	require.Empty(t, traceParent(&models.Job{}))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	require.Equal(t, tp, traceParent(&models.Job{TraceParent: tp}))
}
