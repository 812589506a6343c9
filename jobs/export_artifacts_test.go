package jobs

// SetArtifactScan makes the engine's artifact sweep read jobsPerPass jobs
// per pass, so that tests can see a scan spread over passes.
func SetArtifactScan(e *Engine, jobsPerPass int) { e.reconciler.artifactScanJobs = jobsPerPass }
