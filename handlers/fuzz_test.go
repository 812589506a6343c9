package handlers_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jobhook/jobhook/internal/testenv"
)

// FuzzCreateJobRequest posts arbitrary bodies to POST /api/jobs, on the
// embedded backend and, when configured, on Postgres and Redis. Whatever
// the body: no panic, no 5xx, a JSON answer of the right shape, and a row
// exactly when the answer is 201.
func FuzzCreateJobRequest(f *testing.F) {
	for _, seed := range []string{
		`{"type":"echo","payload":{"text":"hi"}}`,
		`{"type":"echo","payload":{"text":"hi"},"priority":5,"maxAttempts":3,"scheduledFor":"2030-01-02T03:04:05Z"}`,
		`{"type":"noop"}`,
		`{"type":"noop","scheduledFor":null}`,
		`{"type":"noop","scheduledFor":"2001-02-03T04:05:06.999999999-23:59"}`,
		`{"type":"noop","scheduledFor":"9999-12-31T23:59:59-23:59"}`,
		`{"type":"noop","scheduledFor":"1970-01-01T00:00:00+23:59"}`,
		`{"type":"echo","payload":{"text":"\u0000"}}`,
		`{"type":"echo","payload":{"\u0000":"x","text":"y"}}`,
		`{"type":"echo","payload":{"text":"\ud800\udc00"}}`,
		`{"type":"echo","payload":{"text":"\udc00"}}`,
		`{"type":"echo","payload":{"text":"\ud800\u0041"}}`,
		`{"type":"echo","payload":{"text":"\\u0000"}}`,
		`{"type":"echo","payload":{"text":"x","n":1e308}}`,
		`{"type":"echo","payload":{"text":"x","n":1e309}}`,
		`{"type":"echo","payload":{"text":"x","n":-1e-400}}`,
		`{"type":"echo","payload":{"text":"x","n":0e99999}}`,
		`{"type":"echo","payload":{"text":"x","n":5e-324}}`,
		`{"type":"echo","payload":{"text":"x","temperature":0e-20000}}`,
		`{"type":"echo","payload":{"text":"x","n":0E-16384}}`,
		`{"type":"echo","payload":{"text":"x","n":-0.0e+1073741823}}`,
		`{"type":"echo","payload":{"text":"x","n":0e-9999}}`,
		`{"type":"echo","payload":{"text":"x","n":[` + strings.TrimSuffix(strings.Repeat("1e308,", 1000), ",") + `]}}`,
		`{"type":"echo","payload":{"text":"x","deep":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`,
		`{"type":"echo","payload":{"text":"x"},"priority":999999,"maxAttempts":25}`,
		`{"type":"echo","payload":{"text":"x"},"priority":-0}`,
		`{"type":"echo","payload":{"text":"x"},"priority":1e30}`,
		`{"type":"echo","payload":{"text":"x"},"maxAttempts":"3"}`,
		`{"type":"echo\u0000","payload":{"text":"x"}}`,
		`{"type":"echo","type":"noop"}`,
		`{"type":"echo","payload":{"text":"x"},"extra":true}`,
		`{"type":"` + strings.Repeat("t", 10000) + `"}`,
		`[]`, `null`, `{}`, ``, `{`, `"x"`, `123`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}

	type target struct {
		name string
		bb   *bundle
		auth string
	}
	targets := []target{{name: "sqlite+miniredis", bb: setup(f, testenv.Embedded(f))}}
	if testenv.RealConfigured() {
		targets = append(targets, target{name: "postgres+redis", bb: setup(f, testenv.Real(f))})
	}
	tok := "Bearer " + token(f, "fuzzer")

	f.Fuzz(func(t *testing.T, body []byte) {
		for _, tg := range targets {
			before := tg.bb.counts(t)
			rec := tg.bb.do(t, request{method: http.MethodPost, path: "/api/jobs", body: bytes.NewReader(body), auth: tok})
			if rec.Code >= 500 {
				t.Fatalf("%s: status %d for body %q: %s\nlogs:\n%s", tg.name, rec.Code, body, rec.Body.String(), tg.bb.logs.String())
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &top); err != nil {
				t.Fatalf("%s: status %d with a body that is not JSON: %q", tg.name, rec.Code, rec.Body.String())
			}
			after := tg.bb.counts(t)
			switch rec.Code {
			case http.StatusCreated:
				if _, ok := top["jobId"]; !ok {
					t.Fatalf("%s: 201 without jobId: %s", tg.name, rec.Body.String())
				}
				if after.rows != before.rows+1 {
					t.Fatalf("%s: 201 but rows went from %d to %d", tg.name, before.rows, after.rows)
				}
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
				var eb errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" || len(top) != 1 {
					t.Fatalf("%s: error response of the wrong shape: %s", tg.name, rec.Body.String())
				}
				if after != before {
					t.Fatalf("%s: %d %s but something was written: %+v → %+v", tg.name, rec.Code, eb.Error.Code, before, after)
				}
			default:
				t.Fatalf("%s: unexpected status %d: %s", tg.name, rec.Code, rec.Body.String())
			}
		}
	})
}
