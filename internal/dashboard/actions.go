package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// maxListedFailures bounds the failed retries a bulk retry's message names.
const maxListedFailures = 5

// retryJob retries one failed or cancelled job.
func (d *dashboard) retryJob(c echo.Context) error {
	return d.jobAction(c, "re-queued for a fresh run", d.cfg.Service.Retry)
}

// cancelJob cancels one unfinished job and its children.
func (d *dashboard) cancelJob(c echo.Context) error {
	return d.jobAction(c, "cancelled", d.cfg.Service.Cancel)
}

// jobAction runs act on the job of the path as the Operator and goes back
// to the job's page with what happened.
func (d *dashboard) jobAction(c echo.Context, done string, act func(ctx context.Context, userID string, id int64) (*models.Job, error)) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return d.errorPage(c, jobs.ErrNotFound)
	}
	if _, err := act(c.Request().Context(), jobs.Operator, id); err != nil {
		d.flashError(c, err)
	} else {
		setFlash(c, d, flash{Kind: "ok", Message: fmt.Sprintf("Job %d %s.", id, done)})
	}
	return c.Redirect(http.StatusSeeOther, basePath+"/jobs/"+itoa(id))
}

// bulkRetry retries the failed (or cancelled) jobs the posted filter
// matches, and goes back to the list with the filter.
func (d *dashboard) bulkRetry(c echo.Context) error {
	f := readFilter(c.FormValue)
	back := basePath + "/jobs" + f.Query()
	req, err := f.request()
	if err == nil {
		var res jobs.BulkRetry
		if res, err = d.cfg.Service.RetryMatching(c.Request().Context(), jobs.Operator, req); err == nil {
			setFlash(c, d, bulkFlash(res))
			return c.Redirect(http.StatusSeeOther, back)
		}
	}
	d.flashError(c, err)
	return c.Redirect(http.StatusSeeOther, back)
}

// bulkFlash says what a bulk retry did.
func bulkFlash(res jobs.BulkRetry) flash {
	msg := fmt.Sprintf("Retried %d job(s).", len(res.Retried))
	if len(res.Failed) == 0 {
		return flash{Kind: "ok", Message: msg}
	}
	parts := make([]string, 0, maxListedFailures)
	for i, f := range res.Failed {
		if i == maxListedFailures {
			parts = append(parts, fmt.Sprintf("and %d more", len(res.Failed)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("job %d: %s (%s)", f.ID, f.Message, f.Code))
	}
	return flash{Kind: "error", Code: res.Failed[0].Code,
		Message: fmt.Sprintf("%s %d could not be: %s.", msg, len(res.Failed), strings.Join(parts, "; "))}
}

// pauseType holds a job type.
func (d *dashboard) pauseType(c echo.Context) error {
	typ := c.Param("type")
	_, err := d.cfg.Service.HoldType(c.Request().Context(), jobs.Operator, typ, c.FormValue("reason"))
	return d.afterHold(c, err, "Job type "+typ+" paused: its new jobs wait until resumed.")
}

// resumeType releases a job type.
func (d *dashboard) resumeType(c echo.Context) error {
	typ := c.Param("type")
	_, err := d.cfg.Service.ResumeType(c.Request().Context(), jobs.Operator, typ)
	return d.afterHold(c, err, "Job type "+typ+" resumed.")
}

// pauseFlowKey holds the flow key of the form's key field.
func (d *dashboard) pauseFlowKey(c echo.Context) error {
	key := strings.TrimSpace(c.FormValue("key"))
	_, err := d.cfg.Service.HoldFlowKey(c.Request().Context(), jobs.Operator, key, c.FormValue("reason"))
	return d.afterHold(c, err, "Flow key "+key+" paused.")
}

// resumeFlowKey releases the flow key of the form's key field.
func (d *dashboard) resumeFlowKey(c echo.Context) error {
	key := strings.TrimSpace(c.FormValue("key"))
	_, err := d.cfg.Service.ResumeFlowKey(c.Request().Context(), jobs.Operator, key)
	return d.afterHold(c, err, "Flow key "+key+" resumed.")
}

// afterHold goes back to the form's page (the overview by default) with
// what happened.
func (d *dashboard) afterHold(c echo.Context, err error, done string) error {
	if err != nil {
		d.flashError(c, err)
	} else {
		setFlash(c, d, flash{Kind: "ok", Message: done})
	}
	return c.Redirect(http.StatusSeeOther, safeNext(c.FormValue("back")))
}

// flashError keeps a Service error, readable and with its code, for the
// next page.
func (d *dashboard) flashError(c echo.Context, err error) {
	code, _, msg := d.describeError(err)
	setFlash(c, d, flash{Kind: "error", Code: code, Message: msg})
}
