package jobs

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// tracerName names the engine's tracer.
const tracerName = "github.com/jobhook/jobhook/jobs"

// Span attributes of the engine's spans.
const (
	attrJobID      = attribute.Key("jobhook.job.id")
	attrJobType    = attribute.Key("jobhook.job.type")
	attrAttempt    = attribute.Key("jobhook.job.attempt")
	attrOutcome    = attribute.Key("jobhook.job.outcome")
	attrCreated    = attribute.Key("jobhook.job.created")
	attrBatchSize  = attribute.Key("jobhook.batch.size")
	attrClaimed    = attribute.Key("jobhook.drain.claimed")
	attrCompleted  = attribute.Key("jobhook.drain.completed")
	attrFailed     = attribute.Key("jobhook.drain.failed")
	attrRetried    = attribute.Key("jobhook.drain.retried")
	attrRemaining  = attribute.Key("jobhook.drain.remaining")
	attrDrainProms = attribute.Key("jobhook.drain.promoted")
)

// tracer starts the engine's spans (see Config.TracerProvider). Its zero
// value is off: it starts nothing, allocates nothing and stores no
// traceparent.
type tracer struct {
	t trace.Tracer
}

// noSpan is the span of a tracer that is off.
var noSpan trace.Span = noop.Span{}

func newTracer(tp trace.TracerProvider) tracer {
	if tp == nil {
		return tracer{}
	}
	return tracer{t: tp.Tracer(tracerName)}
}

// on says whether spans are made.
func (t tracer) on() bool { return t.t != nil }

// start starts a span named name, the child of ctx's, when t is on.
func (t tracer) start(ctx context.Context, name string) (context.Context, trace.Span) {
	if t.t == nil {
		return ctx, noSpan
	}
	return t.t.Start(ctx, name)
}

// startAttempt starts the span of one attempt of job: the child of the
// job's stored traceparent (the create's span), linked to the drain's span
// in ctx; without a stored traceparent, the child of the drain's span.
func (t tracer) startAttempt(ctx context.Context, job *models.Job) (context.Context, trace.Span) {
	if t.t == nil {
		return ctx, noSpan
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(
		attrJobID.Int64(job.ID), attrJobType.String(job.Type), attrAttempt.Int(job.Attempts))}
	parent := ctx
	if sc := spanContextOf(job.TraceParent); sc.IsValid() {
		if drain := trace.SpanContextFromContext(ctx); drain.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: drain}))
		}
		parent = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return t.t.Start(parent, "jobs.attempt "+job.Type, opts...)
}

// endAttempt ends an attempt's span with its outcome: the transition's
// kind (completed, retry, failed, deferred, snoozed, released, unstarted),
// or lost when nothing is recorded. A failure, or a failed attempt to be
// retried, sets the span's error status with the job's error text (secret
// values already scrubbed).
func endAttempt(span trace.Span, r ran) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	outcome := "lost"
	if r.write {
		tr := r.item.update.Transition
		outcome = string(tr.Kind())
		switch tr.Kind() {
		case store.KindFailed, store.KindRetry:
			span.SetStatus(codes.Error, tr.Err())
		}
	}
	span.SetAttributes(attrOutcome.String(outcome))
}

// endDrain ends a drain's span with what the drain did.
func endDrain(span trace.Span, sum DrainSummary, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrClaimed.Int(sum.Claimed), attrCompleted.Int(sum.Completed), attrFailed.Int(sum.Failed),
		attrRetried.Int(sum.Retried), attrDrainProms.Int(sum.Promoted), attrRemaining.Int64(sum.Remaining))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
}

// endCreate ends a create's span: the job it made (or found, for an
// idempotent replay), or the error.
func endCreate(span trace.Span, job *models.Job, created bool, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	case job != nil:
		span.SetAttributes(attrJobID.Int64(job.ID), attrJobType.String(job.Type), attrCreated.Bool(created))
	}
}

// endBatch ends a batch create's span.
func endBatch(span trace.Span, n int, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrBatchSize.Int(n))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
}

// traceContext is the W3C propagator of the stored traceparents.
var traceContext propagation.TraceContext

// traceParentOf is the W3C traceparent of ctx's span, or "" when it has
// none.
func traceParentOf(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"]
}

// spanContextOf parses a stored traceparent; an empty or malformed one
// gives an invalid span context.
func spanContextOf(traceParent string) trace.SpanContext {
	if traceParent == "" {
		return trace.SpanContext{}
	}
	ctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
	return trace.SpanContextFromContext(ctx)
}

// withTraceParent returns ctx with a stored traceparent as its (remote)
// span context, or ctx unchanged when there is none.
func withTraceParent(ctx context.Context, traceParent string) context.Context {
	if sc := spanContextOf(traceParent); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}
