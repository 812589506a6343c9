package jobs

// Test-only names for the engine's plumbing, for the black-box tests of
// package jobs_test: outside the tests only the Engine builds these.

type (
	Reconciler       = reconciler
	ReconcilerConfig = reconcilerConfig
	ReconcileResult  = reconcileResult
)

// NewReconciler returns a reconciler.
func NewReconciler(cfg ReconcilerConfig) *Reconciler { return newReconciler(cfg) }

// WithReconciler returns cfg with the reconciler its drains reap and
// reconcile with.
func WithReconciler(cfg WorkerConfig, r *Reconciler) WorkerConfig {
	cfg.reconciler = r
	return cfg
}
