package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// fanOut spawns one "record" child per payload item and collects their
// results in order; a failed child fails it.
type fanOut struct{ spawned *int }

func (f fanOut) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	var p struct{ N int }
	_ = json.Unmarshal(job.Payload, &p)
	specs := make([]jobs.ChildSpec, p.N)
	for i := range specs {
		specs[i] = jobs.ChildSpec{Type: "record", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	ids, err := jobs.SpawnChildren(ctx, specs)
	if err != nil {
		return nil, err
	}
	*f.spawned += len(ids)
	children, err := jobs.AwaitChildren(ctx, time.Hour)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for _, c := range children {
		if c.Status != models.StatusCompleted {
			return nil, jobs.Permanent(fmt.Errorf("child %d %s: %s", c.ID, c.Status, c.Error))
		}
		out = append(out, json.RawMessage(c.Result))
	}
	return json.Marshal(out)
}

func TestParentFinishesWhenItsChildrenHave(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		spawned := 0
		x.registry.MustRegister("fan_out", fanOut{&spawned})
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) { return json.RawMessage(job.Payload), nil }
		parent := x.create(t, jobs.CreateRequest{Type: "fan_out", Payload: json.RawMessage(`{"n":4}`)})
		w := x.worker(jobs.Config{})
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Snoozed, "the parent waited once")
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status, "the last child woke the parent within the same drain")
		require.Equal(t, 1, row.Attempts, "waiting did not use attempts")
		require.JSONEq(t, `[{"i":0},{"i":1},{"i":2},{"i":3}]`, string(row.Result), "children's results in order")
		require.Equal(t, 8, spawned, "the second run got the same four children back")
		var n int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("parent_id = ?", parent.ID).Count(&n).Error)
		require.EqualValues(t, 4, n, "no duplicate children")
	})
}

func TestAFailedChildFailsItsParent(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		spawned := 0
		x.registry.MustRegister("fan_out", fanOut{&spawned})
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) {
			if string(job.Payload) == `{"i":1}` || string(job.Payload) == `{"i": 1}` {
				return nil, jobs.Permanent(errors.New("provider refused slide 1"))
			}
			return json.RawMessage(`{}`), nil
		}
		parent := x.create(t, jobs.CreateRequest{Type: "fan_out", Payload: json.RawMessage(`{"n":3}`)})
		_, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Contains(t, row.Error, "provider refused slide 1")
	})
}
