package jobs

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFlowLimits(t *testing.T) {
	got, err := ParseFlowLimits(" ig:=1; host:=4 60/1m;; openai:abc:=0 500/1s ")
	require.NoError(t, err)
	require.Equal(t, []FlowLimit{
		{Prefix: "ig:", Concurrency: 1},
		{Prefix: "host:", Concurrency: 4, Rate: 60, Interval: time.Minute},
		{Prefix: "openai:abc:", Rate: 500, Interval: time.Second},
	}, got)
	for _, l := range got {
		again, err := ParseFlowLimits(l.String())
		require.NoError(t, err)
		require.Equal(t, []FlowLimit{l}, again, "String writes what ParseFlowLimits reads")
	}
	for in, want := range map[string]string{
		"ig:":            "want prefix=concurrency",
		"=1":             "a prefix is not empty",
		"ig:=x":          "not a whole number",
		"ig:=-1":         "must not be negative",
		"ig:=1 60":       "want starts/interval",
		"ig:=1 60/soon":  "rate interval",
		"ig:=1 60/0s":    "positive interval",
		"ig:=1 60/1m 70": "want prefix=concurrency",
	} {
		_, err := ParseFlowLimits(in)
		require.ErrorContains(t, err, want, "input %q", in)
	}
	require.Empty(t, must(ParseFlowLimits("")))
}

func TestMergeFlowLimitsOverridesByPrefix(t *testing.T) {
	base := []FlowLimit{{Prefix: "ig:", Concurrency: 1}, {Prefix: "fb:", Concurrency: 1}}
	got := MergeFlowLimits(base, []FlowLimit{{Prefix: "fb:", Concurrency: 3}, {Prefix: "host:", Concurrency: 2}})
	require.Equal(t, []FlowLimit{{Prefix: "ig:", Concurrency: 1}, {Prefix: "fb:", Concurrency: 3}, {Prefix: "host:", Concurrency: 2}}, got)
	require.Equal(t, 1, base[1].Concurrency, "base is left as it was")
}

func TestPauseFlowDefersLikeRetryAfter(t *testing.T) {
	err := PauseFlow(errors.New("throttled"), "ig:1", 2*time.Minute, "usage 100%")
	d, ok := retryAfterDelay(err)
	require.True(t, ok)
	require.Equal(t, 2*time.Minute, d)
	p, ok := flowPauseOf(err)
	require.True(t, ok)
	require.Equal(t, "ig:1", p.Key)
	require.True(t, IsPermanent(Permanent(err)), "Permanent still marks it")
	require.Nil(t, PauseFlow(nil, "ig:1", time.Minute, ""))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
