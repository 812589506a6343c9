package schedules_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/schedules"
)

func TestTheCommittedFileIsValid(t *testing.T) {
	f, err := schedules.Load("../../" + schedules.DefaultFile)
	require.NoError(t, err)
	require.Len(t, f.Schedules, 1)
	require.Equal(t, "drain", f.Schedules[0].Name)
	require.Equal(t, "* * * * *", f.Schedules[0].Cron)
	require.Equal(t, "/api/workers", f.Schedules[0].Path)
}

func TestParseNamesTheBadEntry(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"bad cron", `{"schedules":[{"name":"a","cron":"61 * * * *","path":"/api/workers"}]}`, `schedules[0] ("a"): cron "61 * * * *"`},
		{"six fields", `{"schedules":[{"name":"a","cron":"0 * * * * *","path":"/x"}]}`, `cron "0 * * * * *"`},
		{"never fires", `{"schedules":[{"name":"a","cron":"0 0 30 2 *","path":"/x"}]}`, "never fires"},
		{"no cron", `{"schedules":[{"name":"a","path":"/x"}]}`, "cron is required"},
		{"relative path", `{"schedules":[{"name":"a","cron":"* * * * *","path":"api/workers"}]}`, `path "api/workers"`},
		{"full URL path", `{"schedules":[{"name":"a","cron":"* * * * *","path":"https://evil.example/x"}]}`, "path"},
		{"double slash", `{"schedules":[{"name":"a","cron":"* * * * *","path":"//evil.example/x"}]}`, "path"},
		{"bad name", `{"schedules":[{"name":"Drain Now","cron":"* * * * *","path":"/x"}]}`, "name must be"},
		{"duplicate", `{"schedules":[{"name":"a","cron":"* * * * *","path":"/x"},{"name":"a","cron":"* * * * *","path":"/y"}]}`, `schedules[1] ("a"): name is already used by schedules[0]`},
		{"method", `{"schedules":[{"name":"a","cron":"* * * * *","path":"/x","method":"TRACE"}]}`, `method "TRACE"`},
		{"retries", `{"schedules":[{"name":"a","cron":"* * * * *","path":"/x","retries":9}]}`, "retries must be 0–5"},
		{"unknown field", `{"schedules":[{"name":"a","cron":"* * * * *","path":"/x","crontab":"x"}]}`, `unknown field "crontab"`},
		{"not JSON", `schedules: []`, "not a valid schedules file"},
		{"trailing", `{"schedules":[]} {}`, "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := schedules.Parse([]byte(tc.json))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseDefaultsAndTimezones(t *testing.T) {
	f, err := schedules.Parse([]byte(`{"schedules":[{"name":"nightly.report","cron":"CRON_TZ=Europe/Berlin 0 4 * * *","path":"/api/workers?x=1","body":{ "a" : 1 }}]}`))
	require.NoError(t, err)
	e := f.Schedules[0]
	require.Equal(t, "POST", e.Method)
	require.Equal(t, `{"a":1}`, string(e.Body))
	spec := e.Spec("https://app.example.com/")
	require.Equal(t, "jobhook-nightly.report", spec.ID)
	require.Equal(t, "https://app.example.com/api/workers?x=1", spec.Destination)
}

// FuzzParse: any input either parses into entries that are all valid, or
// is refused with an error; never a panic.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("../../" + schedules.DefaultFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"schedules":[{"name":"a","cron":"*/5 * * * *","path":"/x","method":"get","retries":2,"body":[1]}]}`))
	f.Add([]byte(`{"schedules":[{"name":"a","cron":"CRON_TZ=Bad/Zone * * * * *","path":"/x"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := schedules.Parse(data)
		if err != nil {
			return
		}
		for _, e := range file.Schedules {
			if e.Name == "" || e.Cron == "" || !strings.HasPrefix(e.Path, "/") || strings.Contains(e.Path, "//") || e.Method == "" {
				t.Fatalf("accepted an invalid entry: %+v", e)
			}
		}
	})
}
