package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/jobs"
)

// getWorkerJob serves GET /api/workers/jobs/:id: one job as an operator
// sees it (any user's; secret payload fields redacted, as on every job
// route), with its history, for a caller holding a worker credential —
// such as `jobhook trigger --wait`, which calls the worker endpoint and
// then watches the job it waits for over HTTP, with nothing but the
// server's URL and WORKER_SECRET.
//
// It is authenticated as POST /api/workers is (authenticateWorker: the
// bearer WORKER_SECRET compared in constant time, or a QStash
// signature). A refused credential counts toward the worker-auth failure
// limit; a valid one is never refused by it.
func (s *server) getWorkerJob(c echo.Context) error {
	if err := s.authenticateWorker(c.Request(), nil); err != nil {
		return s.workerAuthFailed(c, err)
	}
	id, err := jobID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	job, err := s.cfg.Service.Get(ctx, jobs.Operator, id)
	if err != nil {
		return err
	}
	history, err := s.cfg.Service.Attempts(ctx, jobs.Operator, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, JobResponse{Job: *job, History: history})
}
