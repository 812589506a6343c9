package tasks

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sigIG = "ig:17841400000000001"

func bucHeader(v string) http.Header { return http.Header{"X-Business-Use-Case-Usage": {v}} }

// TestGraphUsagePauses: which usage headers pause which key, for how long,
// and why.
func TestGraphUsagePauses(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		header http.Header
		want   []flowPause
	}{
		{"none", http.Header{}, nil},
		{"low usage", bucHeader(`{"1784":[{"type":"instagram","call_count":50,"total_cputime":10,"total_time":20,"estimated_time_to_regain_access":0}]}`), nil},
		{"97% with regain time", bucHeader(`{"1784":[{"type":"instagram","call_count":97,"total_cputime":10,"total_time":20,"estimated_time_to_regain_access":2}]}`),
			[]flowPause{{sigIG, 132 * time.Second, "business use case usage 97% (call_count), access returns in ~2 min"}}},
		{"95% cpu, no regain time: the estimate", bucHeader(`{"1784":[{"type":"pages","call_count":5,"total_cputime":95,"total_time":20}]}`),
			[]flowPause{{sigIG, 66 * time.Second, "business use case usage 95% (total_cputime)"}}},
		{"94.9% is below", bucHeader(`{"1784":[{"call_count":94.9}]}`), nil},
		{"blocked at low usage", bucHeader(`{"1784":[{"call_count":20,"estimated_time_to_regain_access":30}]}`),
			[]flowPause{{sigIG, 33 * time.Minute, "business use case usage 20% (call_count), access returns in ~30 min"}}},
		{"worst of several entries", bucHeader(`{"1":[{"call_count":99}],"2":[{"total_time":96,"estimated_time_to_regain_access":5},{"call_count":100}]}`),
			[]flowPause{{sigIG, 5*time.Minute + 30*time.Second, "business use case usage 96% (total_time), access returns in ~5 min"}}},
		{"tiny regain time: the minimum", bucHeader(`{"1":[{"call_count":100,"estimated_time_to_regain_access":0.01}]}`),
			[]flowPause{{sigIG, GraphPauseMin, "business use case usage 100% (call_count), access returns in ~600 ms"}}},
		{"huge regain time: the maximum", bucHeader(`{"1":[{"call_count":100,"estimated_time_to_regain_access":1e300}]}`),
			[]flowPause{{sigIG, GraphPauseMax, "business use case usage 100% (call_count), access returns in ~24 h"}}},
		{"negative regain time ignored", bucHeader(`{"1":[{"call_count":10,"estimated_time_to_regain_access":-5}]}`), nil},
		{"app usage", http.Header{"X-App-Usage": {`{"call_count":12,"total_cputime":8,"total_time":98}`}},
			[]flowPause{{FlowKeyGraphApp, 66 * time.Second, "app usage 98% (total_time)"}}},
		{"app below", http.Header{"X-App-Usage": {`{"call_count":94,"total_cputime":8,"total_time":9}`}}, nil},
		{"both", http.Header{"X-App-Usage": {`{"call_count":100}`}, "X-Business-Use-Case-Usage": {`{"1":[{"call_count":99}]}`}},
			[]flowPause{{sigIG, 66 * time.Second, "business use case usage 99% (call_count)"}, {FlowKeyGraphApp, 66 * time.Second, "app usage 100% (call_count)"}}},
		// Malformed headers are ignored, never a crash.
		{"not JSON", bucHeader(`{"1":[{"call_count":99`), nil},
		{"string numbers", bucHeader(`{"1":[{"call_count":"99"}]}`), nil},
		{"wrong shape", bucHeader(`[{"call_count":99}]`), nil},
		{"entries not a list", bucHeader(`{"1":{"call_count":99}}`), nil},
		{"null entries", bucHeader(`{"1":null,"2":[null]}`), nil},
		{"empty", bucHeader(``), nil},
		{"oversized", bucHeader(`{"1":[{"call_count":99}]` + strings.Repeat(" ", graphMaxSignalHeader) + `}`), nil},
		{"app not JSON", http.Header{"X-App-Usage": {`call_count=99`}}, nil},
		{"app wrong types", http.Header{"X-App-Usage": {`{"call_count":true}`}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parseGraphSignals(c.header, now).usagePauses(sigIG)
			assert.Equal(t, c.want, got)
		})
	}
	t.Run("no account key", func(t *testing.T) {
		got := parseGraphSignals(bucHeader(`{"1":[{"call_count":99}]}`), now).usagePauses("")
		assert.Empty(t, got)
	})
}

// TestGraphThrottlePause: which Graph errors pause which key.
func TestGraphThrottlePause(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	blocked := `{"1784":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":2}]}`
	cases := []struct {
		name          string
		code, subcode int
		status        int
		header        http.Header
		wantKey       string // "" is no pause
		wantAfter     time.Duration
		wantReason    string
	}{
		{"app limit", 4, 0, 400, nil, FlowKeyGraphApp, 66 * time.Second, "Graph app request limit (error 4)"},
		{"app limit with Retry-After", 4, 0, 429, http.Header{"Retry-After": {"30"}}, FlowKeyGraphApp, 33 * time.Second, "Graph app request limit (error 4), Retry-After ~30 s"},
		{"app limit ignores the account's regain time", 4, 0, 400, bucHeader(blocked), FlowKeyGraphApp, 66 * time.Second, "Graph app request limit (error 4)"},
		{"application limit", 341, 0, 400, nil, FlowKeyGraphApp, 66 * time.Second, "Graph application limit (error 341)"},
		{"user limit", 17, 0, 400, nil, sigIG, 66 * time.Second, "Graph user request limit (error 17)"},
		{"page limit", 32, 0, 400, nil, sigIG, 66 * time.Second, "Graph page request limit (error 32)"},
		{"custom limit", 613, 0, 400, nil, sigIG, 66 * time.Second, "Graph custom rate limit (error 613)"},
		{"BUC pages", 80001, 0, 400, nil, sigIG, 66 * time.Second, "Graph business use case rate limit (error 80001)"},
		{"BUC instagram with regain time", 80002, 0, 400, bucHeader(blocked), sigIG, 132 * time.Second, "Graph business use case rate limit (error 80002), access returns in ~2 min"},
		{"regain time wins over Retry-After", 80002, 0, 400, http.Header{"Retry-After": {"10"}, "X-Business-Use-Case-Usage": {blocked}}, sigIG, 132 * time.Second, "Graph business use case rate limit (error 80002), access returns in ~2 min"},
		{"BUC messenger", 80006, 0, 400, nil, sigIG, 66 * time.Second, "Graph business use case rate limit (error 80006)"},
		{"last BUC code", 80014, 0, 400, nil, sigIG, 66 * time.Second, "Graph business use case rate limit (error 80014)"},
		{"bare 429", 0, 0, 429, nil, sigIG, 66 * time.Second, "Graph HTTP 429 (error 0)"},
		{"daily posts", 9, 2207042, 400, nil, sigIG, 66 * time.Minute, "Instagram daily publishing limit reached (error 9/2207042), re-checking in ~66 min"},
		{"not a limit: transient", 2, 0, 400, nil, "", 0, ""},
		{"not a limit: parameter", 100, 0, 400, nil, "", 0, ""},
		{"not a limit: 80015", 80015, 0, 400, nil, "", 0, ""},
		{"not a limit: 500", 0, 0, 500, nil, "", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := parseGraphSignals(c.header, now)
			p, ok := s.throttlePause(&GraphError{Code: c.code, Subcode: c.subcode, Status: c.status}, sigIG)
			if c.wantKey == "" {
				assert.False(t, ok, "pause %+v", p)
				return
			}
			require.True(t, ok)
			assert.Equal(t, flowPause{c.wantKey, c.wantAfter, c.wantReason}, p)
		})
	}
}

func TestPauseWithMargin(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{-time.Second, GraphPauseMin},
		{0, GraphPauseMin},
		{time.Second, GraphPauseMin},
		{10 * time.Second, 11 * time.Second},
		{2 * time.Minute, 132 * time.Second},
		{GraphPauseMax, GraphPauseMax},
		{1<<63 - 1, GraphPauseMax},
	} {
		assert.Equal(t, c.want, graphPauseWithMargin(c.in), "pause for %v", c.in)
	}
	for _, c := range []struct{ in, want time.Duration }{
		{20 * time.Millisecond, OpenAIPauseMin},
		{3 * time.Second, 3300 * time.Millisecond},
		{6 * time.Minute, 396 * time.Second},
		{2 * openAIMaxRetryAfter, openAIMaxRetryAfter},
	} {
		assert.Equal(t, c.want, openAIPauseWithMargin(c.in), "pause for %v", c.in)
	}
}

func TestApproxDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		40 * time.Millisecond:          "~40 ms",
		30 * time.Second:               "~30 s",
		89 * time.Second:               "~89 s",
		132 * time.Second:              "~2 min",
		66 * time.Minute:               "~66 min",
		2 * time.Hour:                  "~2 h",
		90 * time.Minute:               "~1.5 h",
		24*time.Hour + time.Nanosecond: "~24 h",
	} {
		assert.Equal(t, want, approxDuration(d), "%v", d)
	}
}
