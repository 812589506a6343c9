package qstashdev

import (
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"
)

// MessageState is a message's state, named as in QStash's logs.
type MessageState string

// Message states.
const (
	StateCreated   MessageState = "CREATED"   // waiting for its first attempt
	StateActive    MessageState = "ACTIVE"    // an attempt is in flight
	StateRetry     MessageState = "RETRY"     // waiting for a retry
	StateDelivered MessageState = "DELIVERED" // a 2xx was received
	StateFailed    MessageState = "FAILED"    // retries exhausted or non-retryable; in the DLQ
	StateCancelled MessageState = "CANCELLED" // cancelled through the API
)

// message is a published (or schedule-produced) message. Guarded by
// Server.mu.
type message struct {
	id         string
	url        string
	method     string
	header     http.Header // headers delivered: forwarded ones and Content-Type
	body       []byte
	maxRetries int
	retried    int
	notBefore  time.Time
	createdAt  time.Time
	timeout    time.Duration
	scheduleID string
	callerIP   string

	state           MessageState
	prevState       MessageState // state before the current claim
	cancelRequested bool
}

// pending reports whether m waits for an attempt.
func (m *message) pending() bool { return m.state == StateCreated || m.state == StateRetry }

// Message is a snapshot of a message for inspection in tests.
type Message struct {
	ID         string
	URL        string
	Method     string
	Header     http.Header // delivered headers (Upstash-Forward- prefix stripped, Content-Type)
	Body       []byte
	MaxRetries int
	Retried    int // attempts already retried
	NotBefore  time.Time
	CreatedAt  time.Time
	ScheduleID string
	CallerIP   string
	State      MessageState
}

func (m *message) snapshot() Message {
	return Message{
		ID: m.id, URL: m.url, Method: m.method, Header: m.header.Clone(),
		Body: slices.Clone(m.body), MaxRetries: m.maxRetries, Retried: m.retried,
		NotBefore: m.notBefore, CreatedAt: m.createdAt, ScheduleID: m.scheduleID,
		CallerIP: m.callerIP, State: m.state,
	}
}

// messageJSON is the Message object of QStash's REST API.
type messageJSON struct {
	MessageID  string      `json:"messageId"`
	URL        string      `json:"url"`
	Method     string      `json:"method"`
	Header     http.Header `json:"header"`
	Body       string      `json:"body,omitempty"`
	BodyBase64 string      `json:"bodyBase64,omitempty"`
	MaxRetries int         `json:"maxRetries"`
	NotBefore  int64       `json:"notBefore"`
	CreatedAt  int64       `json:"createdAt"`
	ScheduleID string      `json:"scheduleId,omitempty"`
	CallerIP   string      `json:"callerIP,omitempty"`
}

// bodyFields returns body as the API shows it: as text when it is UTF-8,
// otherwise base64.
func bodyFields(b []byte) (text, b64 string) {
	if len(b) == 0 {
		return "", ""
	}
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

func (m *message) toJSON() messageJSON {
	text, b64 := bodyFields(m.body)
	h := m.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	return messageJSON{
		MessageID: m.id, URL: m.url, Method: m.method, Header: h,
		Body: text, BodyBase64: b64, MaxRetries: m.maxRetries,
		NotBefore: m.notBefore.UnixMilli(), CreatedAt: m.createdAt.UnixMilli(),
		ScheduleID: m.scheduleID, CallerIP: m.callerIP,
	}
}

// schedule is a cron schedule. Guarded by Server.mu.
type schedule struct {
	id          string
	cron        string
	spec        cron.Schedule
	destination string
	method      string
	header      http.Header
	body        []byte
	retries     int
	delay       time.Duration
	timeout     time.Duration
	callerIP    string
	createdAt   time.Time
	paused      bool
	next        time.Time // zero: never fires (impossible spec)
	last        time.Time
	lastStates  map[string]string
}

// Schedule is a snapshot of a schedule for inspection in tests.
type Schedule struct {
	ID          string
	Cron        string
	Destination string
	Method      string
	Header      http.Header
	Body        []byte
	Retries     int
	Delay       time.Duration
	CallerIP    string
	CreatedAt   time.Time
	Paused      bool
	// Next is when the cron next ticks; zero when the spec can never match
	// (e.g. 30 February).
	Next time.Time
	// Last is the last tick that produced a message; zero if none.
	Last time.Time
	// LastStates maps the message ids of the last tick to IN_PROGRESS,
	// SUCCESS or FAIL.
	LastStates map[string]string
}

func (sc *schedule) snapshot() Schedule {
	return Schedule{
		ID: sc.id, Cron: sc.cron, Destination: sc.destination, Method: sc.method,
		Header: sc.header.Clone(), Body: slices.Clone(sc.body), Retries: sc.retries,
		Delay: sc.delay, CallerIP: sc.callerIP, CreatedAt: sc.createdAt, Paused: sc.paused,
		Next: sc.next, Last: sc.last, LastStates: maps.Clone(sc.lastStates),
	}
}

// scheduleJSON is the Schedule object of QStash's REST API, with the numeric
// types qstash-go v1.0.0 decodes (delay in whole seconds, times in ms).
type scheduleJSON struct {
	ScheduleID         string            `json:"scheduleId"`
	CreatedAt          int64             `json:"createdAt"`
	Cron               string            `json:"cron"`
	Destination        string            `json:"destination"`
	Method             string            `json:"method"`
	Header             http.Header       `json:"header,omitempty"`
	Body               string            `json:"body,omitempty"`
	BodyBase64         string            `json:"bodyBase64,omitempty"`
	Retries            int               `json:"retries"`
	Delay              int64             `json:"delay,omitempty"`
	CallerIP           string            `json:"callerIP,omitempty"`
	IsPaused           bool              `json:"isPaused"`
	LastScheduleTime   int64             `json:"lastScheduleTime,omitempty"`
	NextScheduleTime   int64             `json:"nextScheduleTime,omitempty"`
	LastScheduleStates map[string]string `json:"lastScheduleStates,omitempty"`
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func (sc *schedule) toJSON() scheduleJSON {
	text, b64 := bodyFields(sc.body)
	var h http.Header
	if len(sc.header) > 0 {
		h = sc.header.Clone()
	}
	return scheduleJSON{
		ScheduleID: sc.id, CreatedAt: sc.createdAt.UnixMilli(), Cron: sc.cron,
		Destination: sc.destination, Method: sc.method, Header: h,
		Body: text, BodyBase64: b64, Retries: sc.retries,
		Delay: int64(sc.delay / time.Second), CallerIP: sc.callerIP, IsPaused: sc.paused,
		LastScheduleTime: msOrZero(sc.last), NextScheduleTime: msOrZero(sc.next),
		LastScheduleStates: maps.Clone(sc.lastStates),
	}
}

// Delivery is one delivery attempt, as recorded for tests.
type Delivery struct {
	MessageID  string
	ScheduleID string
	URL        string
	Method     string
	Header     http.Header // request headers sent, Upstash-Signature included
	Body       []byte
	Retried    int       // value of Upstash-Retried
	At         time.Time // Clock time of the attempt
	// Status is the destination's HTTP status; 0 when the request failed.
	Status         int
	ResponseHeader http.Header
	ResponseBody   []byte // first 64 KiB
	// Err is the transport error, if any (connection refused, timeout, …).
	Err string
	// Outcome is the message's state after this attempt: DELIVERED, RETRY,
	// FAILED or CANCELLED.
	Outcome MessageState
}

// Stats counts what the server has done since it was created.
type Stats struct {
	Published       int // messages accepted by publish or batch, excluding deduplicated ones
	Deduplicated    int // publishes answered with an existing message id
	ScheduleFirings int // messages produced by schedules
	Attempts        int // delivery attempts made
	Delivered       int // messages delivered (2xx)
	Failed          int // messages moved to the DLQ
	Cancelled       int // messages cancelled
	Pending         int // messages waiting or in flight now
}

// dedupEntry remembers a deduplication id.
type dedupEntry struct {
	messageID string
	at        time.Time
}

// headerIs reports whether h[name] equals want, case-insensitively.
func headerIs(h http.Header, name, want string) bool {
	return strings.EqualFold(strings.TrimSpace(h.Get(name)), want)
}
