package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// FlowKeyer is implemented by handlers whose work is limited by external
// accounts or resources: an Instagram account, a Facebook Page, an AI
// model on one API key, a web host. FlowKeys computes, from a job's
// payload when the job is created, the flow keys the job's work counts
// against, such as "ig:17841400000000001" or "openai:3f2a9c:gpt-4o-mini".
// A key is a prefix naming the kind of resource, a colon and an id; it
// must never contain a secret (an API key is named by a hash of it).
//
// The engine enforces each key's limits (concurrency, rate) across every
// instance at claim time, so a job held back by a key costs no handler
// slot and no attempt, and pauses a key when a handler reports, with
// PauseFlow, that the provider asked it to wait.
type FlowKeyer interface {
	FlowKeys(payload json.RawMessage) ([]string, error)
}

// FlowPauseError is a handler's report that the provider limits the work
// of Key: the job is deferred (the attempt does not count) and every job
// on Key waits, without running, until After has passed.
type FlowPauseError struct {
	Err    error
	Key    string
	After  time.Duration
	Reason string
}

// Error names the key, the wait and the reason.
func (e *FlowPauseError) Error() string {
	return fmt.Sprintf("%v (%s paused for %s: %s)", e.Err, e.Key, e.After, e.Reason)
}

// Unwrap returns the underlying error.
func (e *FlowPauseError) Unwrap() error { return e.Err }

// PauseFlow reports that the provider limits the work of flow key: it
// says access returns after d (the handler adds its margin), for reason
// (such as "business use case usage 97%"). The job is deferred as with
// RetryAfter(err, d), and every other job on key waits without running
// until then, while other keys keep running. Permanent wins over
// PauseFlow. PauseFlow(nil, …) is nil.
func PauseFlow(err error, key string, d time.Duration, reason string) error {
	if err == nil {
		return nil
	}
	if d < 0 {
		d = 0
	}
	return &FlowPauseError{Err: err, Key: key, After: d, Reason: reason}
}

// flowPauseOf returns the pause a handler's error asks for, if any.
func flowPauseOf(err error) (*FlowPauseError, bool) {
	var p *FlowPauseError
	if errors.As(err, &p) && p.Key != "" {
		return p, true
	}
	return nil, false
}

// ReportFlowPause pauses flow key for d, from inside Handle, whatever the
// attempt's outcome: a handler whose call succeeded but whose provider
// said the key is near its limit (usage headers at 95%) reports it so the
// key's next jobs wait instead of being refused. Outside a handler's
// context it does nothing and returns ErrNoJob.
func ReportFlowPause(ctx context.Context, key string, d time.Duration, reason string) error {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return ErrNoJob
	}
	if key == "" {
		return fmt.Errorf("report flow pause: empty key")
	}
	return jc.w.pauseFlow(ctx, key, max(d, 0), reason, 0)
}

// pauseFlow pauses key for d across every instance: its jobs are set
// aside at their next claim until then (see claimScript). jobID, when not
// zero, is the job that reported it, deferred for the pause. The call is
// bounded by queueCallTimeout whatever ctx allows.
func (w *Worker) pauseFlow(ctx context.Context, key string, d time.Duration, reason string, jobID int64) error {
	until := w.cfg.Clock.Now().Add(d)
	qctx, cancel := boundedCtx(context.WithoutCancel(ctx), queueCallTimeout, time.Time{})
	defer cancel()
	if err := w.cfg.Queue.PauseFlow(qctx, key, until, reason, jobID); err != nil {
		w.log.Warn("flow key not paused; its jobs keep running and may be refused", "key", key, "err", err)
		return fmt.Errorf("pause flow key %s: %w: %w", key, ErrUnavailable, err)
	}
	w.fin.metrics.FlowPaused(flowPrefix(key))
	w.log.Info("flow key paused", "key", key, "until", until.UTC(), "reason", reason)
	return nil
}

// Bounds on a job's flow keys.
const (
	maxFlowKeys      = 8
	maxFlowKeyLength = 200
)

// flowKeysOf computes a request's flow keys from its plain payload (before
// its secret fields are sealed), when its handler is a FlowKeyer. A key
// must be printable, without spaces, and at most maxFlowKeyLength bytes;
// duplicates are dropped.
func (s *Service) flowKeysOf(req *CreateRequest) ([]string, error) {
	h, ok := s.cfg.Registry.Lookup(req.Type)
	if !ok {
		return nil, nil
	}
	fk, ok := h.(FlowKeyer)
	if !ok {
		return nil, nil
	}
	keys, err := fk.FlowKeys(req.Payload)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return nil, ve
		}
		return nil, invalid("invalid_payload", "payload", "%s", err.Error())
	}
	var out []string
	for _, k := range keys {
		if err := checkFlowKey(k); err != nil {
			return nil, fmt.Errorf("job type %q: %w", req.Type, err)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) > maxFlowKeys {
		return nil, fmt.Errorf("job type %q: %d flow keys, over the limit of %d", req.Type, len(out), maxFlowKeys)
	}
	return out, nil
}

// checkFlowKey refuses a key the queue cannot store: empty, too long, or
// with a space or a control character.
func checkFlowKey(k string) error {
	if k == "" || len(k) > maxFlowKeyLength || strings.ContainsFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("flow key %q: a key is 1 to %d bytes without spaces or control characters", k, maxFlowKeyLength)
	}
	return nil
}

// check refuses a limit the queue cannot apply.
func (l FlowLimit) check() error {
	switch {
	case l.Prefix == "" || strings.ContainsFunc(l.Prefix, unicode.IsSpace):
		return fmt.Errorf("limit prefix %q: a prefix is not empty and has no spaces", l.Prefix)
	case l.Concurrency < 0 || l.Rate < 0:
		return fmt.Errorf("limit of %s: concurrency and rate must not be negative", l.Prefix)
	case l.Rate > 0 && l.Interval <= 0:
		return fmt.Errorf("limit of %s: a rate needs a positive interval", l.Prefix)
	}
	return nil
}

// String writes the limit as ParseFlowLimits reads it.
func (l FlowLimit) String() string {
	s := l.Prefix + "=" + strconv.Itoa(l.Concurrency)
	if l.Rate > 0 {
		s += " " + strconv.Itoa(l.Rate) + "/" + l.Interval.String()
	}
	return s
}

// ParseFlowLimits reads limits written as "prefix=concurrency [rate/interval]",
// separated by semicolons: "ig:=1; host:=2 60/1m; openai:=0 500/1m" runs one
// job at a time per Instagram account, two per web host with at most 60
// starts a minute, and any number per OpenAI key and model with at most 500
// starts a minute. A concurrency of 0 is no limit.
func ParseFlowLimits(s string) ([]FlowLimit, error) {
	var out []FlowLimit
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		prefix, spec, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("flow limit %q: want prefix=concurrency [rate/interval]", entry)
		}
		l := FlowLimit{Prefix: strings.TrimSpace(prefix)}
		fields := strings.Fields(spec)
		if len(fields) == 0 || len(fields) > 2 {
			return nil, fmt.Errorf("flow limit %q: want prefix=concurrency [rate/interval]", entry)
		}
		c, err := strconv.Atoi(fields[0])
		if err != nil {
			return nil, fmt.Errorf("flow limit %q: concurrency %q is not a whole number", entry, fields[0])
		}
		l.Concurrency = c
		if len(fields) == 2 {
			rate, every, ok := strings.Cut(fields[1], "/")
			r, err := strconv.Atoi(rate)
			if !ok || err != nil {
				return nil, fmt.Errorf("flow limit %q: rate %q: want starts/interval, as 60/1m", entry, fields[1])
			}
			d, err := time.ParseDuration(every)
			if err != nil {
				return nil, fmt.Errorf("flow limit %q: rate interval %q: %w", entry, every, err)
			}
			l.Rate, l.Interval = r, d
		}
		if err := l.check(); err != nil {
			return nil, fmt.Errorf("flow limit %q: %w", entry, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// MergeFlowLimits returns base with each of over replacing the limit of
// the same prefix, or added after them.
func MergeFlowLimits(base, over []FlowLimit) []FlowLimit {
	out := slices.Clone(base)
	for _, o := range over {
		if i := slices.IndexFunc(out, func(l FlowLimit) bool { return l.Prefix == o.Prefix }); i >= 0 {
			out[i] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}
