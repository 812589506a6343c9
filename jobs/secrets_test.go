package jobs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// Test keys: fixed, so that a failure can be reproduced; never used
// outside tests.
var (
	secKeyA = "a:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x0A}, 32))
	secKeyB = "b:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x0B}, 32))
)

// The secrets of the test payloads: a top-level token, and one per target
// (with characters that URL and JSON escaping change).
const (
	tokTop = "EAAB-top-secret-token-7f3a9c"
	tokT0  = "tgt0-secret/with+plus&amp=eq"
	tokT1  = "tgt1-sécret-<b>-token"
)

var allToks = []string{tokTop, tokT0, tokT1}

// secretPayload is a scheduled_publish-like payload with access tokens.
type secretPayload struct {
	AccessToken string         `json:"accessToken"`
	Caption     string         `json:"caption"`
	Targets     []secretTarget `json:"targets"`
}

type secretTarget struct {
	Network     string `json:"network"`
	AccountID   string `json:"accountId"`
	AccessToken string `json:"accessToken"`
}

func newSecretPayload() json.RawMessage {
	return json.RawMessage(`{"accessToken":"` + tokTop + `","caption":"hello <world>","targets":[` +
		`{"network":"instagram","accountId":"ig-1","accessToken":"` + tokT0 + `"},` +
		`{"network":"facebook","accountId":"fb-1","accessToken":"` + tokT1 + `"},` +
		`null]}`)
}

// secretHandler declares the secret fields, records the payloads it is
// handed and lets a test script each call.
type secretHandler struct {
	mu     sync.Mutex
	seen   []json.RawMessage
	script func(p secretPayload, call int) (json.RawMessage, error)
}

func (h *secretHandler) SecretFields() []string {
	return []string{"accessToken", "targets[].accessToken"}
}

// ValidatePayload refuses the caption "reject", quoting the token (as a
// careless validator might). It leaves the shapes to the secret sealing.
func (h *secretHandler) ValidatePayload(raw json.RawMessage) error {
	var p struct {
		AccessToken any    `json:"accessToken"`
		Caption     string `json:"caption"`
	}
	if json.Unmarshal(raw, &p) == nil && p.Caption == "reject" {
		return &jobs.ValidationError{Code: "invalid_payload", Message: fmt.Sprintf("token %v is refused", p.AccessToken),
			Fields: []jobs.FieldError{{Field: "accessToken", Message: fmt.Sprintf("bad token %v", p.AccessToken)}}}
	}
	return nil
}

func (h *secretHandler) Handle(_ context.Context, job *models.Job) (json.RawMessage, error) {
	h.mu.Lock()
	h.seen = append(h.seen, append(json.RawMessage(nil), job.Payload...))
	call, script := len(h.seen), h.script
	h.mu.Unlock()
	var p secretPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		return nil, jobs.Permanent(err)
	}
	if script != nil {
		return script(p, call)
	}
	return json.RawMessage(`{"published":true}`), nil
}

func (h *secretHandler) payloads() []json.RawMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]json.RawMessage(nil), h.seen...)
}

// logBuffer collects the log lines of a test, safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimRight(l.buf.String(), "\n"), "\n")
}

// secretEnv is one test's engine with secret fields, on one backend.
type secretEnv struct {
	*bundle
	h    *secretHandler
	logs *logBuffer
	log  *slog.Logger
}

func secretSetup(t *testing.T, b testenv.Backend) *secretEnv {
	t.Helper()
	x := setup(t, b)
	h := &secretHandler{}
	x.registry.MustRegister("social", h)
	logs := &logBuffer{}
	return &secretEnv{bundle: x, h: h, logs: logs, log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

func keyring(t *testing.T, spec string) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.ParseKeyring(spec)
	require.NoError(t, err)
	return kr
}

func (x *secretEnv) service(kr *secretbox.Keyring) *jobs.Service {
	return x.engine(jobs.Config{Logger: x.log, Secrets: kr}).Service()
}

func (x *secretEnv) secretWorker(kr *secretbox.Keyring) *jobs.Worker {
	return x.worker(jobs.Config{Logger: x.log, Secrets: kr, Concurrency: 1, Backoff: func(int) time.Duration { return time.Second }})
}

func (x *secretEnv) createSocial(t *testing.T, svc *jobs.Service, req jobs.CreateRequest) *models.Job {
	t.Helper()
	if req.UserID == "" {
		req.UserID = "user-1"
	}
	req.Type = "social"
	if req.Payload == nil {
		req.Payload = newSecretPayload()
	}
	job, created, err := svc.Create(context.Background(), req)
	require.NoError(t, err)
	require.True(t, created)
	return job
}

// rawPayload reads the payload column as the database holds it.
func rawPayload(t *testing.T, b testenv.Backend, id int64) string {
	t.Helper()
	var s string
	require.NoError(t, b.DB.Gorm.Raw("SELECT CAST(payload AS TEXT) FROM jobs WHERE id = ?", id).Row().Scan(&s))
	return s
}

// secretForms are the ways a token may appear in text: as it is, and
// URL- and JSON-escaped.
func secretForms(tok string) []string {
	j, _ := json.Marshal(tok)
	return []string{tok, url.QueryEscape(tok), url.PathEscape(tok), string(j[1 : len(j)-1]), tok[:12]}
}

func requireNoTokens(t *testing.T, what, text string) {
	t.Helper()
	for _, tok := range allToks {
		for _, f := range secretForms(tok) {
			require.NotContains(t, text, f, "%s holds a secret", what)
		}
	}
}

// requireRedacted checks a job the Service returned: each secret value is
// "[redacted]", the rest of the payload is intact, and neither plaintext
// nor ciphertext is anywhere in its JSON.
func requireRedacted(t *testing.T, what string, job *models.Job) {
	t.Helper()
	require.NotNil(t, job, what)
	out, err := json.Marshal(job)
	require.NoError(t, err)
	requireNoTokens(t, what, string(out))
	require.NotContains(t, string(out), secretfields.Key, what)
	require.NotContains(t, string(out), "v1.a.", what)
	require.NotContains(t, string(out), "v1.b.", what)
	var p struct {
		AccessToken any               `json:"accessToken"`
		Caption     string            `json:"caption"`
		Targets     []json.RawMessage `json:"targets"`
	}
	require.NoError(t, json.Unmarshal(job.Payload, &p), what)
	require.Equal(t, secretfields.Redacted, p.AccessToken, what)
	require.Equal(t, "hello <world>", p.Caption, what)
	require.Len(t, p.Targets, 3, what)
	for i, raw := range p.Targets[:2] {
		var tg map[string]any
		require.NoError(t, json.Unmarshal(raw, &tg))
		require.Equal(t, secretfields.Redacted, tg["accessToken"], "%s: target %d", what, i)
		require.NotEmpty(t, tg["accountId"], what)
	}
	require.Equal(t, "null", string(p.Targets[2]), what)
}

func requireHandlerGotPlaintext(t *testing.T, raw json.RawMessage) {
	t.Helper()
	var p secretPayload
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, tokTop, p.AccessToken)
	require.Equal(t, "hello <world>", p.Caption)
	require.Len(t, p.Targets, 3)
	require.Equal(t, secretTarget{Network: "instagram", AccountID: "ig-1", AccessToken: tokT0}, p.Targets[0])
	require.Equal(t, secretTarget{Network: "facebook", AccountID: "fb-1", AccessToken: tokT1}, p.Targets[1])
}

// sealedAt returns the sealed string stored at a path of a raw payload.
func sealedAt(t *testing.T, raw string, target int) string {
	t.Helper()
	var p struct {
		AccessToken map[string]string `json:"accessToken"`
		Targets     []map[string]any  `json:"targets"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &p))
	if target < 0 {
		return p.AccessToken[secretfields.Key]
	}
	w, ok := p.Targets[target]["accessToken"].(map[string]any)
	require.True(t, ok, "target %d is sealed: %s", target, raw)
	s, _ := w[secretfields.Key].(string)
	return s
}

// TestSecretFieldsAtRestAndInEveryReturn creates a job with access tokens
// and checks the row holds only sealed values, every Service method
// returns them redacted, and the handler gets the plaintext.
func TestSecretFieldsAtRestAndInEveryReturn(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		kr := keyring(t, secKeyA)
		svc := x.service(kr)

		job := x.createSocial(t, svc, jobs.CreateRequest{IdempotencyKey: "post-1", MaxAttempts: 2})
		requireRedacted(t, "Create", job)

		raw := rawPayload(t, b, job.ID)
		requireNoTokens(t, "the payload column", raw)
		require.Equal(t, 3, strings.Count(raw, `"`+secretfields.Key+`"`), raw)
		for _, i := range []int{-1, 0, 1} {
			require.True(t, strings.HasPrefix(sealedAt(t, raw, i), "v1.a."), raw)
		}
		require.Contains(t, raw, "hello <world>", "other fields are stored as they are")

		again, created, err := svc.Create(ctx, jobs.CreateRequest{UserID: "user-1", Type: "social", Payload: newSecretPayload(), IdempotencyKey: "post-1"})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, job.ID, again.ID)
		requireRedacted(t, "Create (idempotent replay)", again)

		got, err := svc.Get(ctx, "user-1", job.ID)
		require.NoError(t, err)
		requireRedacted(t, "Get", got)
		page, err := svc.List(ctx, jobs.ListRequest{UserID: "user-1"})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 1)
		requireRedacted(t, "List", &page.Jobs[0])

		// Reschedule and Cancel, on a second job.
		other := x.createSocial(t, svc, jobs.CreateRequest{})
		moved, err := svc.Reschedule(ctx, "user-1", other.ID, x.clock.Now().Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, models.StatusScheduled, moved.Status)
		requireRedacted(t, "Reschedule", moved)
		cancelled, err := svc.Cancel(ctx, "user-1", other.ID)
		require.NoError(t, err)
		requireRedacted(t, "Cancel", cancelled)
		refused, err := svc.Cancel(ctx, "user-1", other.ID)
		require.ErrorIs(t, err, jobs.ErrNotCancellable)
		requireRedacted(t, "Cancel (refused)", refused)

		// Run: the handler gets the plaintext; the row keeps the ciphertext.
		x.h.script = func(secretPayload, int) (json.RawMessage, error) {
			return nil, jobs.Permanent(errors.New("provider said no"))
		}
		sum, err := x.secretWorker(kr).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		seen := x.h.payloads()
		require.Len(t, seen, 1)
		requireHandlerGotPlaintext(t, seen[0])
		require.Equal(t, raw, rawPayload(t, b, job.ID), "the stored payload is unchanged by the run")

		x.h.script = nil
		retried, err := svc.Retry(ctx, "user-1", job.ID)
		require.NoError(t, err)
		requireRedacted(t, "Retry", retried)
		sum, err = x.secretWorker(kr).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		requireHandlerGotPlaintext(t, x.h.payloads()[1])
		done, err := svc.Get(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCompleted, done.Status)
		requireRedacted(t, "Get (completed)", done)
		refusedRetry, err := svc.Retry(ctx, "user-1", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotRetryable)
		requireRedacted(t, "Retry (refused)", refusedRetry)
		requireNoTokens(t, "the payload column after the runs", rawPayload(t, b, job.ID))

		for i, line := range x.logs.lines() {
			requireNoTokens(t, fmt.Sprintf("log line %d %q", i+1, line), line)
		}
	})
}

// TestSecretsNeverInErrorsHistoryOrLogs runs a full create → run (retry)
// → run (fail) → retry → run (fail near the truncation limit) → retry →
// run (success) cycle whose handler errors echo the tokens, raw and
// escaped, and scans every stored error and every log line.
func TestSecretsNeverInErrorsHistoryOrLogs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		kr := keyring(t, secKeyA)
		svc := x.service(kr)
		w := x.secretWorker(kr)
		x.h.script = func(p secretPayload, call int) (json.RawMessage, error) {
			switch call {
			case 1:
				return nil, fmt.Errorf(`Get "https://graph.example/v21.0/me?access_token=%s": 500 {"error":{"message":%q,"token":%q}}`,
					url.QueryEscape(p.Targets[0].AccessToken), "bad token "+p.AccessToken, p.Targets[1].AccessToken)
			case 2:
				return nil, jobs.Permanent(fmt.Errorf("token %s (path /%s) revoked", p.AccessToken, url.PathEscape(p.Targets[0].AccessToken)))
			case 3:
				// The token straddles the truncation limit of stored errors.
				return nil, jobs.Permanent(errors.New(strings.Repeat("x", 1990) + p.AccessToken + " tail"))
			default:
				return json.RawMessage(`{"published":true}`), nil
			}
		}
		job := x.createSocial(t, svc, jobs.CreateRequest{MaxAttempts: 3})

		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Retried)
		row := x.reload(t, job.ID)
		require.Contains(t, row.Error, "access_token="+secretfields.Redacted)
		require.Contains(t, row.Error, `"token":"`+secretfields.Redacted+`"`)
		require.Contains(t, row.Error, "bad token "+secretfields.Redacted)
		requireNoTokens(t, "the stored error", row.Error)

		x.clock.Advance(time.Minute)
		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		row = x.reload(t, job.ID)
		require.Equal(t, "token "+secretfields.Redacted+" (path /"+secretfields.Redacted+") revoked", row.Error)
		got, err := svc.Get(ctx, "user-1", job.ID)
		require.NoError(t, err)
		requireRedacted(t, "Get (failed)", got)

		_, err = svc.Retry(ctx, "user-1", job.ID)
		require.NoError(t, err)
		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		row = x.reload(t, job.ID)
		require.True(t, strings.HasPrefix(row.Error, strings.Repeat("x", 1990)+secretfields.Redacted[:10]), row.Error[1980:])
		requireNoTokens(t, "the truncated error", row.Error)
		require.NotContains(t, row.Error, tokTop[:4], "no prefix of a token survives the truncation")

		_, err = svc.Retry(ctx, "user-1", job.ID)
		require.NoError(t, err)
		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)

		history, err := svc.Attempts(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Len(t, history, 4)
		for i, a := range history[:3] {
			require.Contains(t, a.Error, secretfields.Redacted, "attempt %d", i+1)
			requireNoTokens(t, fmt.Sprintf("attempt %d's error", i+1), a.Error)
		}
		var stored []models.JobAttempt
		require.NoError(t, b.DB.Gorm.Where("job_id = ?", job.ID).Find(&stored).Error)
		for _, a := range stored {
			requireNoTokens(t, "the job_attempts table", a.Error)
		}
		for _, p := range x.h.payloads() {
			requireHandlerGotPlaintext(t, p)
		}

		lines := x.logs.lines()
		require.Greater(t, len(lines), 6)
		var sawRetry, sawFail bool
		for i, line := range lines {
			requireNoTokens(t, fmt.Sprintf("log line %d %q", i+1, line), line)
			require.NotContains(t, line, "v1.a.", "log line %d holds a sealed value", i+1)
			sawRetry = sawRetry || strings.Contains(line, "job will be retried")
			sawFail = sawFail || strings.Contains(line, "job failed")
		}
		require.True(t, sawRetry && sawFail, "the failures were logged")
	})
}

// TestSecretsScrubbedInAnyCaseOrHTMLEscaped: an upstream error that echoes
// a token lower-cased, upper-cased or HTML-escaped is scrubbed like an
// exact copy from the stored error, the attempt history and the logs.
func TestSecretsScrubbedInAnyCaseOrHTMLEscaped(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		kr := keyring(t, secKeyA)
		svc := x.service(kr)
		w := x.secretWorker(kr)
		x.h.script = func(p secretPayload, _ int) (json.RawMessage, error) {
			return nil, jobs.Permanent(fmt.Errorf("<html><body>invalid token %s; also %s and <code>%s</code> (%s)</body></html>",
				strings.ToLower(p.AccessToken), strings.ToUpper(p.Targets[0].AccessToken),
				html.EscapeString(p.Targets[1].AccessToken), strings.ToUpper(html.EscapeString(p.Targets[1].AccessToken))))
		}
		job := x.createSocial(t, svc, jobs.CreateRequest{MaxAttempts: 1})
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)

		row := x.reload(t, job.ID)
		want := "<html><body>invalid token " + secretfields.Redacted + "; also " + secretfields.Redacted + " and <code>" + secretfields.Redacted + "</code> (" + secretfields.Redacted + ")</body></html>"
		require.Equal(t, want, row.Error)
		history, err := svc.Attempts(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Len(t, history, 1)
		require.Equal(t, want, history[0].Error)
		for i, line := range x.logs.lines() {
			requireNoTokensAnyForm(t, fmt.Sprintf("log line %d", i+1), line)
		}
		requireNoTokensAnyForm(t, "the stored error", row.Error)
	})
}

// requireNoTokensAnyForm is requireNoTokens in any letter case and after
// undoing HTML escapes.
func requireNoTokensAnyForm(t *testing.T, what, text string) {
	t.Helper()
	for _, variant := range []string{text, strings.ToLower(html.UnescapeString(text))} {
		for _, tok := range allToks {
			for _, f := range secretForms(tok) {
				require.NotContains(t, strings.ToLower(variant), strings.ToLower(f), "%s holds a secret", what)
			}
		}
	}
}

// TestSecretKeyRotation: jobs sealed with key A still open with keyring
// "B,A"; new jobs are sealed with B; a worker without A fails A's jobs
// for good, naming the field and the key id.
func TestSecretKeyRotation(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		onlyA := keyring(t, secKeyA)
		rotated := keyring(t, secKeyB+","+secKeyA)
		onlyB := keyring(t, secKeyB)

		oldJob := x.createSocial(t, x.service(onlyA), jobs.CreateRequest{})
		require.True(t, strings.HasPrefix(sealedAt(t, rawPayload(t, b, oldJob.ID), -1), "v1.a."))
		newJob := x.createSocial(t, x.service(rotated), jobs.CreateRequest{})
		rawNew := rawPayload(t, b, newJob.ID)
		for _, i := range []int{-1, 0, 1} {
			require.True(t, strings.HasPrefix(sealedAt(t, rawNew, i), "v1.b."), "new jobs are sealed with the first key")
		}

		sum, err := x.secretWorker(rotated).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum.Completed)
		seen := x.h.payloads()
		require.Len(t, seen, 2)
		for _, p := range seen {
			requireHandlerGotPlaintext(t, p)
		}

		// Key A dropped too early: A's job cannot run.
		stranded := x.createSocial(t, x.service(onlyA), jobs.CreateRequest{MaxAttempts: 5})
		sum, err = x.secretWorker(onlyB).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		row := x.reload(t, stranded.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, 1, row.Attempts, "permanent: no retries")
		require.Contains(t, row.Error, `secret payload field "accessToken" cannot be decrypted`)
		require.Contains(t, row.Error, `unknown key id "a"`)
		require.Len(t, x.h.payloads(), 2, "the handler never ran")
	})
}

// TestTamperedSecretFailsPermanently alters, moves and transplants sealed
// values in the database: each job fails at once with a message naming
// the field, and its handler never runs. A sealed wrapper sent by a client
// is sealed like any value, never opened.
func TestTamperedSecretFailsPermanently(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		kr := keyring(t, secKeyA)
		svc := x.service(kr)
		setPayload := func(id int64, p string) {
			require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).Update("payload", models.JSON(p)).Error)
		}

		// 1. One character of a ciphertext changed.
		tampered := x.createSocial(t, svc, jobs.CreateRequest{MaxAttempts: 5})
		raw := rawPayload(t, b, tampered.ID)
		s0 := sealedAt(t, raw, 0)
		last := s0[len(s0)-3]
		flipped := byte('A')
		if last == 'A' {
			flipped = 'B'
		}
		bad := s0[:len(s0)-3] + string(flipped) + s0[len(s0)-2:]
		setPayload(tampered.ID, strings.Replace(raw, s0, bad, 1))

		// 2. The top-level token's ciphertext moved into a target.
		moved := x.createSocial(t, svc, jobs.CreateRequest{MaxAttempts: 5})
		raw = rawPayload(t, b, moved.ID)
		setPayload(moved.ID, strings.Replace(raw, sealedAt(t, raw, 1), sealedAt(t, raw, -1), 1))

		// 3. Another user's ciphertext transplanted into this job.
		victim := x.createSocial(t, svc, jobs.CreateRequest{UserID: "victim"})
		stolen := sealedAt(t, rawPayload(t, b, victim.ID), -1)
		_, err := svc.Cancel(ctx, "victim", victim.ID)
		require.NoError(t, err)
		thief := x.createSocial(t, svc, jobs.CreateRequest{UserID: "thief", MaxAttempts: 5})
		raw = rawPayload(t, b, thief.ID)
		setPayload(thief.ID, strings.Replace(raw, sealedAt(t, raw, -1), stolen, 1))

		// 4. A client sends a sealed wrapper as its token: it is sealed
		// again, and the handler gets the wrapper, not the victim's token.
		wrapped := x.createSocial(t, svc, jobs.CreateRequest{UserID: "thief", Payload: json.RawMessage(
			`{"accessToken":{"$secret":"` + stolen + `"},"caption":"hello <world>","targets":[]}`)})

		sum, err := x.secretWorker(kr).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 4, sum.Failed)
		for _, c := range []struct {
			id    int64
			field string
		}{{tampered.ID, "targets[0].accessToken"}, {moved.ID, "targets[1].accessToken"}, {thief.ID, "accessToken"}} {
			row := x.reload(t, c.id)
			require.Equal(t, models.StatusFailed, row.Status)
			require.Equal(t, 1, row.Attempts)
			require.Contains(t, row.Error, fmt.Sprintf("secret payload field %q cannot be decrypted: it was altered or does not belong to this job and field", c.field))
			require.NotContains(t, row.Error, "v1.a.", "the message never holds the sealed value")
			requireNoTokens(t, "the error", row.Error)
		}
		seen := x.h.payloads()
		require.Len(t, seen, 1, "only the job with a client-sent wrapper ran")
		var p struct {
			AccessToken map[string]string `json:"accessToken"`
		}
		require.NoError(t, json.Unmarshal(seen[0], &p))
		require.Equal(t, stolen, p.AccessToken[secretfields.Key], "the client's value comes back as it was sent, unopened")
		require.Equal(t, models.StatusFailed, x.reload(t, wrapped.ID).Status, "the handler could not decode it")
	})
}

// TestSecretFieldsNeedAKeyring: without a keyring a type with secret
// fields is refused with ErrSecretsUnconfigured and nothing is stored;
// other types still work; a worker without a keyring fails sealed jobs.
func TestSecretFieldsNeedAKeyring(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		svc := x.service(nil)
		_, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "user-1", Type: "social", Payload: newSecretPayload(), IdempotencyKey: "k"})
		require.ErrorIs(t, err, jobs.ErrSecretsUnconfigured)
		var ve *jobs.ValidationError
		require.False(t, errors.As(err, &ve), "a server misconfiguration, not a bad request")
		require.NotContains(t, err.Error(), tokTop)
		var n int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
		require.Zero(t, n, "nothing stored")
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d, "nothing enqueued")

		plain, created, err := svc.Create(ctx, jobs.CreateRequest{UserID: "user-1", Type: "record"})
		require.NoError(t, err)
		require.True(t, created, "types without secret fields need no keyring")

		sealed := x.createSocial(t, x.service(keyring(t, secKeyA)), jobs.CreateRequest{})
		sum, err := x.secretWorker(nil).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		require.Equal(t, 1, sum.Failed)
		require.Equal(t, models.StatusCompleted, x.reload(t, plain.ID).Status)
		row := x.reload(t, sealed.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Contains(t, row.Error, "cannot be decrypted: no encryption key is configured (JOBS_ENCRYPTION_KEY)")
		require.Empty(t, x.h.payloads())
	})
}

// TestSecretFieldKeysMatchLikeEncodingJSON: encoding/json decodes
// "ACCESSTOKEN" (or "acceſſToken") into a field tagged accessToken, so
// such keys are sealed too.
func TestSecretFieldKeysMatchLikeEncodingJSON(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := secretSetup(t, b)
		kr := keyring(t, secKeyA)
		svc := x.service(kr)
		for i, payload := range []string{
			`{"ACCESSTOKEN":"` + tokTop + `","Targets":[{"AccessToken":"` + tokT0 + `"},{"accessTOKEN":"` + tokT1 + `"}]}`,
			`{"acceſſToken":"` + tokTop + `","targets":[{"accessToKen":"` + tokT0 + `"}],"caption":"c"}`,
			`{"accessToken":"decoy","AccessToken":"` + tokTop + `"}`,
		} {
			job := x.createSocial(t, svc, jobs.CreateRequest{Payload: json.RawMessage(payload)})
			raw := rawPayload(t, b, job.ID)
			requireNoTokens(t, fmt.Sprintf("payload %d at rest", i), raw)
			require.NotContains(t, raw, "decoy")
			out, err := json.Marshal(job)
			require.NoError(t, err)
			requireNoTokens(t, fmt.Sprintf("payload %d returned", i), string(out))
			require.Contains(t, string(out), secretfields.Redacted)
			require.NotContains(t, string(out), "decoy")
		}
		sum, err := x.secretWorker(kr).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 3, sum.Completed)
		var got []secretPayload
		for _, raw := range x.h.payloads() {
			var p secretPayload
			require.NoError(t, json.Unmarshal(raw, &p))
			got = append(got, p)
		}
		require.Equal(t, tokTop, got[0].AccessToken)
		require.Equal(t, []string{tokT0, tokT1}, []string{got[0].Targets[0].AccessToken, got[0].Targets[1].AccessToken})
		require.Equal(t, tokTop, got[1].AccessToken)
		require.Equal(t, tokT0, got[1].Targets[0].AccessToken)
	})
}

// TestSecretFieldShapeAndValidation: a targets value that is not an array
// of objects is a 400 naming the field; a validator quoting the token has
// it scrubbed from its error; neither stores anything.
func TestSecretFieldShapeAndValidation(t *testing.T) {
	b := testenv.Embedded(t)
	x := secretSetup(t, b)
	svc := x.service(keyring(t, secKeyA))
	for _, c := range []struct{ payload, field string }{
		{`{"targets":"` + tokT0 + `"}`, "targets"},
		{`{"targets":{"accessToken":"` + tokT0 + `"}}`, "targets"},
		{`{"targets":[{"accessToken":"x"},"` + tokT0 + `"]}`, "targets[1]"},
	} {
		_, _, err := svc.Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: "social", Payload: json.RawMessage(c.payload)})
		var ve *jobs.ValidationError
		require.True(t, errors.As(err, &ve), "%s: %v", c.payload, err)
		require.Equal(t, "invalid_payload", ve.Code)
		require.Equal(t, c.field, ve.Fields[0].Field)
		require.NotContains(t, ve.Error(), tokT0)
	}
	_, _, err := svc.Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: "social",
		Payload: json.RawMessage(`{"accessToken":"` + tokTop + `","caption":"reject"}`)})
	var ve *jobs.ValidationError
	require.True(t, errors.As(err, &ve), "%v", err)
	require.Equal(t, "token [redacted] is refused", ve.Message)
	require.Equal(t, []jobs.FieldError{{Field: "accessToken", Message: "bad token [redacted]"}}, ve.Fields)
	var n int64
	require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
	require.Zero(t, n)
}

// TestStaleSealedValuesAreRedacted: a sealed wrapper in the payload of a
// type that does not (or no longer does) declare the field is still
// hidden, and so is an unsealed value at a declared path.
func TestStaleSealedValuesAreRedacted(t *testing.T) {
	b := testenv.Embedded(t)
	x := secretSetup(t, b)
	now := x.clock.Now()
	rows := []models.Job{
		{UserID: "user-1", Type: "record", Status: models.StatusCompleted, Payload: models.JSON(`{"keep":"me","old":{"$secret":"v1.a.AAAA"},"list":[{"$secret":"v1.a.BBBB"}]}`),
			MaxAttempts: 3, NextRunAt: now, CreatedAt: now, UpdatedAt: now},
		{UserID: "user-1", Type: "social", Status: models.StatusCompleted, Payload: models.JSON(`{"accessToken":"` + tokTop + `","targets":{"accessToken":"` + tokT0 + `"}}`),
			MaxAttempts: 3, NextRunAt: now, CreatedAt: now, UpdatedAt: now},
	}
	require.NoError(t, b.DB.Gorm.Create(&rows).Error)
	svc := x.service(keyring(t, secKeyA))
	got, err := svc.Get(context.Background(), "user-1", rows[0].ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"keep":"me","old":"[redacted]","list":["[redacted]"]}`, string(got.Payload))
	got, err = svc.Get(context.Background(), "user-1", rows[1].ID)
	require.NoError(t, err)
	require.JSONEq(t, `{"accessToken":"[redacted]","targets":"[redacted]"}`, string(got.Payload), "a container of the wrong shape is hidden whole")
}

func TestCheckSecretFields(t *testing.T) {
	reg := jobs.NewRegistry()
	reg.MustRegister("social", &secretHandler{})
	reg.MustRegister("plain", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
	types, err := jobs.CheckSecretFields(reg)
	require.NoError(t, err)
	require.Equal(t, []string{"social"}, types)

	for _, bad := range []string{"", "a.b", "a[].b.c", "a[]", "[].x", "a[0].b", "a[].", "a[][].b", "a]", "x[].y[]"} {
		reg := jobs.NewRegistry()
		reg.MustRegister("t", fieldsHandler{bad})
		_, err := jobs.CheckSecretFields(reg)
		require.Error(t, err, "%q", bad)
		require.Contains(t, err.Error(), `job type "t"`)
	}
	// A bad declaration refuses the create rather than storing plaintext.
	b := testenv.Embedded(t)
	x := setup(t, b)
	x.registry.MustRegister("t", fieldsHandler{"a.b"})
	svc := x.engine(jobs.Config{Secrets: keyring(t, secKeyA)}).Service()
	_, _, err = svc.Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: "t", Payload: json.RawMessage(`{"a":{"b":"s"}}`)})
	require.ErrorContains(t, err, "secret field path")
}

type fieldsHandler struct{ path string }

func (fieldsHandler) Handle(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }
func (h fieldsHandler) SecretFields() []string                                     { return []string{h.path} }
