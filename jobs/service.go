package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// DefaultMaxPayloadBytes is the default size limit of a job's payload.
const DefaultMaxPayloadBytes = 256 << 10

// MaxIdempotencyKeyLength is the longest Idempotency-Key accepted.
const MaxIdempotencyKeyLength = 255

// List page sizes.
const (
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// serviceConfig builds a Service.
type serviceConfig struct {
	DB       *gorm.DB
	Queue    *redisQueue
	Registry *Registry
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxPayloadBytes limits a payload's size, as sent and as stored (with
	// its numbers written out in full, as Postgres keeps them). Defaults to
	// DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// MaxWait sets the expiry of a job created without one (see
	// CreateRequest.ExpiresAt), unless its handler is a WaitLimiter.
	// Defaults to DefaultMaxWait.
	MaxWait time.Duration
	// Notify, when set, is called after a job that is due now is enqueued,
	// to start a worker soon (the in-process runner, or a trigger).
	Notify func(ctx context.Context)
	// Publisher, when set, delivers scheduled jobs at their time (a QStash
	// delayed message). Without one, or when a publish fails, the drain
	// promotes due scheduled jobs.
	Publisher Publisher
	// Secrets seals the secret payload fields of new jobs (see
	// SecretFielder): the keyring, a *secretbox.Keyring. Without it (nil,
	// or a nil keyring), types with secret fields cannot be created
	// (ErrSecretsUnconfigured).
	Secrets secretfields.Sealer
	// Interrupt, when set, cancels at once the handlers running in this
	// process that hold one of the claims (jobs Cancel just cancelled
	// while they ran); other processes' heartbeats find them at their next
	// tick.
	Interrupt func(running []store.Fence)
}

// DeliveryTolerance is how early a scheduled job's delivery may arrive and
// still start it (clocks differ). An earlier delivery — one for a time the
// job was since moved from — is ignored.
const DeliveryTolerance = 5 * time.Second

// Service creates, reads and cancels jobs. The database is the source of
// truth; the queue only orders the jobs that can run.
type Service struct {
	cfg   serviceConfig
	log   *slog.Logger
	store *store.Store
	fin   *finisher
	// groups gathers concurrent creates into one write.
	groups createGroups
	// tracer starts the create spans; off unless the engine has a
	// TracerProvider.
	tracer tracer
}

// newService returns a Service.
func newService(cfg serviceConfig) *Service {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "service"), store: store.New(cfg.DB)}
	s.fin = &finisher{store: s.store, queue: cfg.Queue, clock: cfg.Clock, log: s.log, notify: cfg.Notify, metrics: noMetrics{}}
	return s
}

// CreateRequest asks for a new job.
type CreateRequest struct {
	UserID string
	Type   string
	// Payload must be a JSON object. Empty means {}.
	Payload json.RawMessage
	// Priority is 0–999999; larger runs first.
	Priority int
	// MaxAttempts is 1–25; 0 means models.DefaultMaxAttempts.
	MaxAttempts int
	// ScheduledFor, when in the future, stores the job as scheduled.
	ScheduledFor *time.Time
	// ExpiresAt bounds the job's waits: a deferral (RetryAfter) or a
	// Snooze whose next run would come after it fails the job instead
	// (waits for children are not bounded by it). It must be after now
	// and after ScheduledFor. Nil means ScheduledFor (or the creation)
	// plus the handler's MaxWait (see WaitLimiter), or else the engine's
	// DefaultMaxWait; a child's expiry is never after its parent's.
	ExpiresAt *time.Time
	// IdempotencyKey, when set, makes a second create with the same user and
	// key return the first job.
	IdempotencyKey string
	// ParentID makes the job a child of a running job (see SpawnChildren);
	// it is never taken from an API request.
	ParentID *int64
	// parentExpiresAt caps the expiry of a child (see CreateChild).
	parentExpiresAt *time.Time
	// flowKeys are the job's flow keys, computed by prepare.
	flowKeys []string
	// traceParent is the W3C traceparent of the create's span, stored
	// with the job (empty when tracing is off).
	traceParent string
}

// Validate checks a request without touching any backend.
func (s *Service) Validate(req *CreateRequest) error {
	if req.UserID == "" {
		return invalid("invalid_user", "", "a user id is required")
	}
	if req.UserID == Operator {
		return ErrOperatorCannotCreate
	}
	if req.Type == "" {
		return invalid("invalid_type", "type", "type is required")
	}
	h, ok := s.cfg.Registry.Lookup(req.Type)
	if !ok {
		e := invalid("unknown_job_type", "type", "unknown job type %q", req.Type)
		return e
	}
	if len(req.Payload) == 0 {
		req.Payload = json.RawMessage("{}")
	}
	if len(req.Payload) > s.cfg.MaxPayloadBytes {
		return invalid("payload_too_large", "payload", "payload is %d bytes, over the limit of %d", len(req.Payload), s.cfg.MaxPayloadBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(req.Payload, &obj); err != nil || obj == nil {
		return invalid("invalid_payload", "payload", "payload must be a JSON object")
	}
	stored, err := checkStorableJSON(req.Payload)
	if err != nil {
		return invalid("invalid_payload", "payload", "%s", err.Error())
	}
	if stored > s.cfg.MaxPayloadBytes {
		return invalid("payload_too_large", "payload", "payload is %d bytes with its numbers written out in full, as the database stores them, over the limit of %d",
			stored, s.cfg.MaxPayloadBytes)
	}
	if req.Priority < models.MinPriority || req.Priority > models.MaxPriority {
		return invalid("invalid_priority", "priority", "priority must be an integer from %d to %d", models.MinPriority, models.MaxPriority)
	}
	if req.MaxAttempts == 0 {
		req.MaxAttempts = models.DefaultMaxAttempts
	}
	if req.MaxAttempts < models.MinMaxAttempts || req.MaxAttempts > models.MaxMaxAttempts {
		return invalid("invalid_max_attempts", "maxAttempts", "maxAttempts must be an integer from %d to %d", models.MinMaxAttempts, models.MaxMaxAttempts)
	}
	if req.ExpiresAt != nil {
		if err := s.checkExpiry(*req.ExpiresAt, req.ScheduledFor); err != nil {
			return err
		}
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKeyLength || !utf8.ValidString(req.IdempotencyKey) ||
		strings.ContainsFunc(req.IdempotencyKey, unicode.IsControl) {
		return invalid("invalid_idempotency_key", "Idempotency-Key",
			"Idempotency-Key must be valid UTF-8 of at most %d bytes, without control characters", MaxIdempotencyKeyLength)
	}
	if v, ok := h.(PayloadValidator); ok {
		if err := v.ValidatePayload(req.Payload); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				return ve
			}
			return invalid("invalid_payload", "payload", "%s", err.Error())
		}
	}
	return nil
}

// checkExpiry refuses an explicit expiry that is not after now and after
// the job's scheduled time.
func (s *Service) checkExpiry(at time.Time, scheduledFor *time.Time) error {
	now := s.cfg.Clock.Now()
	if !at.After(now) {
		return invalid("invalid_expires_at", "expiresAt", "expiresAt must be in the future (it is %s, now is %s)", at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if scheduledFor != nil && !at.After(*scheduledFor) {
		return invalid("invalid_expires_at", "expiresAt", "expiresAt must be after scheduledFor (%s is not after %s)", at.UTC().Format(time.RFC3339), scheduledFor.UTC().Format(time.RFC3339))
	}
	return nil
}

// maxWait is how long after its start a job of type typ created without
// an expiry may wait: its handler's MaxWait, or the service's default.
func (s *Service) maxWait(typ string) time.Duration {
	if h, ok := s.cfg.Registry.Lookup(typ); ok {
		if wl, ok := h.(WaitLimiter); ok && wl.MaxWait() > 0 {
			return wl.MaxWait()
		}
	}
	return s.cfg.MaxWait
}

// Create validates and stores a job, and enqueues it when it is due now.
// It returns the job and whether it was created (false: an earlier job with
// the same Idempotency-Key). If the enqueue fails after the insert, the job
// is still created: the reconciler enqueues it later.
func (s *Service) Create(ctx context.Context, req CreateRequest) (job *models.Job, created bool, err error) {
	ctx, span := s.tracer.start(ctx, "jobs.create")
	defer func() { endCreate(span, job, created, err) }()
	if err := s.prepare(&req); err != nil {
		return nil, false, err
	}
	if s.tracer.on() {
		req.traceParent = traceParentOf(ctx)
	}
	c, err := s.createGrouped(ctx, req)
	if err != nil {
		return nil, false, err
	}
	return c.Job, c.Created, nil
}

// publishScheduled asks the Publisher to deliver a scheduled job at its
// time and stores the message id. A failure is logged only: the drain
// promotes the job when it falls due.
func (s *Service) publishScheduled(ctx context.Context, log *slog.Logger, job *models.Job) {
	if s.cfg.Publisher == nil || job.ScheduledFor == nil {
		return
	}
	// The delivery carries the job's own trace (a grouped create's ctx is
	// another create's).
	id, err := s.cfg.Publisher.PublishAt(withTraceParent(ctx, job.TraceParent), job.ID, *job.ScheduledFor)
	if err != nil {
		log.Warn("delayed delivery not published; the per-minute drain will start the job", "err", err)
		return
	}
	if ok, err := s.store.SetMessageID(ctx, job.ID, *job.ScheduledFor, id); err != nil || !ok {
		// Moved or cancelled meanwhile: the message is stale.
		if cerr := s.cfg.Publisher.Cancel(ctx, id); cerr != nil {
			log.Warn("stale delayed delivery not cancelled; it will be ignored when it arrives", "message_id", id, "err", cerr)
		}
		return
	}
	job.QStashMessageID = &id
}

func (s *Service) cancelMessage(ctx context.Context, job *models.Job) {
	s.cancelMessageID(ctx, job.ID, job.QStashMessageID)
}

// cancelMessageID withdraws the delayed delivery messageID of job id, if
// any.
func (s *Service) cancelMessageID(ctx context.Context, id int64, messageID *string) {
	if s.cfg.Publisher == nil || messageID == nil || *messageID == "" {
		return
	}
	if err := s.cfg.Publisher.Cancel(ctx, *messageID); err != nil {
		// Harmless: a delivery for a job no longer scheduled at that time
		// does nothing.
		s.log.Warn("delayed delivery not cancelled", "job_id", id, "message_id", *messageID, "err", err)
	}
}

// ErrNotReschedulable is returned when moving a job that is neither
// pending nor scheduled.
var ErrNotReschedulable = errors.New("job cannot be rescheduled in its current status")

// Reschedule moves a user's pending or scheduled job to run at at: in the
// future it becomes scheduled (a new delayed delivery replaces the old
// one), otherwise pending and enqueued now. A job moved later keeps as
// long to wait as it had: its expiry moves as far as its start (its
// scheduled time, or its creation) did; a job moved earlier keeps its
// expiry.
func (s *Service) Reschedule(ctx context.Context, userID string, id int64, at time.Time) (*models.Job, error) {
	before, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if before.Status != models.StatusPending && before.Status != models.StatusScheduled {
		return before, ErrNotReschedulable
	}
	now := s.cfg.Clock.Now().UTC()
	at = at.UTC()
	status := models.StatusScheduled
	next := at
	if !at.After(now) {
		status, next = models.StatusPending, now
	}
	var expires *time.Time
	if before.ExpiresAt != nil {
		start := before.CreatedAt
		if before.ScheduledFor != nil {
			start = *before.ScheduledFor
		}
		if d := next.Sub(start); d > 0 {
			e := before.ExpiresAt.Add(d).UTC()
			expires = &e
		}
	}
	moved, err := s.store.Reschedule(ctx, ownerScope(userID), id, before.Status, before.UpdatedAt, status, at, next, now, expires)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !moved {
		// It changed under us (claimed, cancelled, moved): report its state.
		cur, err := s.Get(ctx, userID, id)
		if err != nil {
			return nil, err
		}
		return cur, ErrNotReschedulable
	}
	s.cancelMessage(ctx, before)
	job, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	log := s.log.With("job_id", id, "type", job.Type)
	item := itemOf(job)
	if status == models.StatusScheduled {
		if err := s.cfg.Queue.Remove(ctx, id); err != nil {
			log.Warn("rescheduled job left in the queue; the worker will delay it", "err", err)
		}
		s.publishScheduled(ctx, log, job)
	} else {
		if err := s.cfg.Queue.Remove(ctx, id); err == nil {
			err = s.cfg.Queue.Enqueue(ctx, item)
			if err == nil && s.cfg.Notify != nil {
				s.cfg.Notify(ctx)
			}
		} else {
			log.Warn("rescheduled job not enqueued; the reconciler will enqueue it", "err", err)
		}
	}
	log.Info("job rescheduled", "status", status, "scheduled_for", at)
	return job, nil
}

// Deliver handles the delayed delivery of a scheduled job: if the job is
// still scheduled for about now, it becomes pending and is enqueued. A
// delivery for a job that is cancelled, running, finished, moved to a later
// time or unknown does nothing. It reports whether the job was started.
func (s *Service) Deliver(ctx context.Context, id int64) (bool, error) {
	now := s.cfg.Clock.Now().UTC()
	row, err := s.store.Deliver(ctx, id, now.Add(DeliveryTolerance), now)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if row == nil {
		s.log.Info("delivery ignored: job not scheduled for now", "job_id", id)
		return false, nil
	}
	if err := s.cfg.Queue.Enqueue(ctx, itemOf(row)); err != nil {
		s.log.Warn("delivered job not enqueued; the reconciler will enqueue it", "job_id", id, "err", err)
	}
	s.log.Info("scheduled job delivered", "job_id", id)
	return true, nil
}

// Get returns a user's job. Another user's job is ErrNotFound, so ids
// cannot be probed.
func (s *Service) Get(ctx context.Context, userID string, id int64) (*models.Job, error) {
	job, err := s.store.Get(ctx, ownerScope(userID), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get job %d: %w: %w", id, ErrUnavailable, err)
	}
	s.noteWaits(ctx, job)
	return s.redact(job), nil
}

// noteWaits fills WaitingFor on the pending jobs held back by a flow key
// or an operator's hold of their type.
// The queue not answering leaves it empty: the rows are still the truth.
func (s *Service) noteWaits(ctx context.Context, jobs ...*models.Job) {
	var pending []*models.Job
	for _, j := range jobs {
		if j.Status == models.StatusPending {
			pending = append(pending, j)
		}
	}
	if len(pending) == 0 {
		return
	}
	qctx, cancel := boundedCtx(ctx, queueCallTimeout, time.Time{})
	defer cancel()
	waits, err := s.cfg.Queue.Waiting(qctx, pending)
	if err != nil {
		s.log.Warn("what pending jobs wait for is unknown", "err", err)
		return
	}
	for _, j := range pending {
		j.WaitingFor = waits[j.ID]
	}
}

// ListRequest filters a user's jobs. Zero values do not filter.
type ListRequest struct {
	UserID string
	Status models.Status
	Type   string
	// User keeps one user's jobs: an operator's filter. A user may name
	// only themself (any other is ErrOperatorOnly).
	User string
	// ParentID keeps the children of that job.
	ParentID int64
	// CreatedFrom and CreatedTo keep the jobs created in [CreatedFrom,
	// CreatedTo).
	CreatedFrom, CreatedTo time.Time
	// ErrorContains keeps the jobs whose error holds this text, in any
	// case (on SQLite, any case of ASCII letters only).
	ErrorContains string
	// Cursor is the NextCursor of the previous page.
	Cursor string
	// Limit is 1–100; 0 means DefaultListLimit.
	Limit int
}

// ListPage is one page of jobs, newest first.
type ListPage struct {
	Jobs []models.Job `json:"jobs"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"nextCursor,omitempty"`
}

// listFilter is the store's filter for req (without its cursor), or the
// error the filter's fields call for.
func listFilter(req ListRequest) (store.ListFilter, error) {
	f := store.ListFilter{
		Owner: ownerScope(req.UserID), Status: req.Status, Type: req.Type, Limit: req.Limit + 1,
		ParentID: req.ParentID, CreatedFrom: req.CreatedFrom, CreatedTo: req.CreatedTo, ErrorContains: req.ErrorContains,
	}
	if req.User != "" {
		if req.UserID != Operator && req.User != req.UserID {
			return f, ErrOperatorOnly
		}
		f.Owner = &req.User
	}
	if req.ParentID < 0 {
		return f, invalid("invalid_parent", "parent", "parent must be a job id: a positive integer")
	}
	if !req.CreatedFrom.IsZero() && !req.CreatedTo.IsZero() && !req.CreatedFrom.Before(req.CreatedTo) {
		return f, invalid("invalid_time_range", "createdTo", "createdTo must be later than createdFrom")
	}
	if len(req.ErrorContains) > MaxErrorFilterLength {
		return f, invalid("invalid_filter", "error", "error must be at most %d bytes", MaxErrorFilterLength)
	}
	return f, nil
}

// MaxErrorFilterLength caps ListRequest.ErrorContains.
const MaxErrorFilterLength = 200

// List returns a user's jobs, newest first, a page at a time.
func (s *Service) List(ctx context.Context, req ListRequest) (ListPage, error) {
	if req.Status != "" && !req.Status.Valid() {
		return ListPage{}, invalid("invalid_status", "status", "status must be one of %v", models.Statuses)
	}
	if req.Limit == 0 {
		req.Limit = DefaultListLimit
	}
	if req.Limit < 1 || req.Limit > MaxListLimit {
		return ListPage{}, invalid("invalid_limit", "limit", "limit must be an integer from 1 to %d", MaxListLimit)
	}
	f, err := listFilter(req)
	if err != nil {
		return ListPage{}, err
	}
	if req.Cursor != "" {
		before, err := decodeCursor(req.Cursor)
		if err != nil {
			return ListPage{}, invalid("invalid_cursor", "cursor", "cursor is not one this server returned")
		}
		f.Before = before
	}
	rows, err := s.store.List(ctx, f)
	if err != nil {
		return ListPage{}, fmt.Errorf("list jobs: %w: %w", ErrUnavailable, err)
	}
	page := ListPage{Jobs: rows}
	if len(rows) > req.Limit {
		page.Jobs = rows[:req.Limit]
		page.NextCursor = encodeCursor(page.Jobs[req.Limit-1].ID)
	}
	if page.Jobs == nil {
		page.Jobs = []models.Job{}
	}
	ptrs := make([]*models.Job, len(page.Jobs))
	for i := range page.Jobs {
		ptrs[i] = &page.Jobs[i]
	}
	s.noteWaits(ctx, ptrs...)
	for i := range page.Jobs {
		s.redact(&page.Jobs[i])
	}
	return page, nil
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(raw) < 4 || string(raw[:3]) != "id:" {
		return 0, errors.New("bad cursor")
	}
	id, err := strconv.ParseInt(string(raw[3:]), 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("bad cursor")
	}
	return id, nil
}

// Cancel cancels a user's unfinished job — pending, scheduled or running —
// and, in the same transaction, every unfinished job below it (its
// children, theirs, and so on); finished ones stay as they are. Each
// leaves the queue, a scheduled one's delayed delivery is withdrawn, and a
// running one's attempt is recorded as cancelled. A running job's handler
// is cancelled with the cause ErrCancelled: at once when it runs in this
// process, otherwise at the next heartbeat of the worker that runs it
// (within a third of the lease); its outcome is dropped. A child's cancel
// is a final outcome for its parent, which wakes when it was the last
// child to finish. A finished job is ErrNotCancellable (the job is
// returned with it); another user's job is ErrNotFound.
func (s *Service) Cancel(ctx context.Context, userID string, id int64) (*models.Job, error) {
	done, err := s.fin.cancel(ctx, ownerScope(userID), id)
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w: %w", id, ErrUnavailable, err)
	}
	job, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if len(done) == 0 {
		return job, fmt.Errorf("%w: it is %s", ErrNotCancellable, job.Status)
	}
	var running []store.Fence
	for _, c := range done {
		if c.From == models.StatusProcessing {
			running = append(running, c.Fence())
		}
		s.cancelMessageID(ctx, c.ID, c.MessageID)
	}
	if len(running) > 0 && s.cfg.Interrupt != nil {
		s.cfg.Interrupt(running)
	}
	s.log.Info("job cancelled", "job_id", id, "from", done[0].From, "descendants", len(done)-1, "running", len(running))
	return job, nil
}

// Registry returns the registry of job types the service accepts.
func (s *Service) Registry() *Registry { return s.cfg.Registry }

// Ready checks that the database and Redis answer.
func (s *Service) Ready(ctx context.Context) map[string]error {
	out := map[string]error{}
	sqlDB, err := s.cfg.DB.DB()
	if err == nil {
		err = sqlDB.PingContext(ctx)
	}
	out["database"] = err
	out["redis"] = s.cfg.Queue.Ping(ctx)
	return out
}
