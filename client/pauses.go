package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// TypeStatus is whether an operator holds a job type, and why: the
// answer of /api/job-types.
type TypeStatus struct {
	Type   string `json:"type"`
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
}

// FlowKeyStatus is one flow key's state: the answer of
// /api/flow-keys/:key.
type FlowKeyStatus struct {
	Key     string `json:"key"`
	Running int64  `json:"running"`
	Parked  int64  `json:"parked"`
	// Paused says the key's jobs wait: until PausedUntil (a provider's
	// pause), or, without it, until an operator resumes the key.
	Paused      bool       `json:"paused"`
	PausedUntil *time.Time `json:"pausedUntil,omitempty"`
	PauseReason string     `json:"pauseReason,omitempty"`
}

// PauseType holds every job of a type until ResumeType
// (POST /api/job-types/:type/pause); the jobs stay pending and say why.
// Operator only.
func (c *JobsClient) PauseType(ctx context.Context, typ, reason string) (TypeStatus, error) {
	var st TypeStatus
	err := c.post(ctx, c.base+"/api/job-types/"+url.PathEscape(typ)+"/pause", map[string]string{"reason": reason}, &st)
	return st, err
}

// ResumeType ends the hold of a job type (POST /api/job-types/:type/resume).
func (c *JobsClient) ResumeType(ctx context.Context, typ string) (TypeStatus, error) {
	var st TypeStatus
	err := c.post(ctx, c.base+"/api/job-types/"+url.PathEscape(typ)+"/resume", nil, &st)
	return st, err
}

// PauseFlowKey holds a flow key until ResumeFlowKey
// (POST /api/flow-keys/:key/pause). Operator only.
func (c *JobsClient) PauseFlowKey(ctx context.Context, key, reason string) (FlowKeyStatus, error) {
	var st FlowKeyStatus
	err := c.post(ctx, c.base+"/api/flow-keys/"+url.PathEscape(key)+"/pause", map[string]string{"reason": reason}, &st)
	return st, err
}

// ResumeFlowKey ends the hold or pause of a flow key
// (POST /api/flow-keys/:key/resume).
func (c *JobsClient) ResumeFlowKey(ctx context.Context, key string) (FlowKeyStatus, error) {
	var st FlowKeyStatus
	err := c.post(ctx, c.base+"/api/flow-keys/"+url.PathEscape(key)+"/resume", nil, &st)
	return st, err
}

// post sends body (nil: none) as JSON and decodes the 200 answer into out.
func (c *JobsClient) post(ctx context.Context, u string, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("POST %s: %w", u, err)
		}
	}
	answer, err := send(ctx, c.client, c.token, http.MethodPost, u, raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("POST %s: unreadable answer: %w", u, err)
	}
	return nil
}
