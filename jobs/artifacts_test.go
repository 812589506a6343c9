package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// memFiles is a jobs.Artifacts over an in-memory folder: names such as
// "img-7.png", a delete that can be made to fail.
type memFiles struct {
	mu      sync.Mutex
	files   map[string]bool
	failing map[string]int // deletes left to fail, by name
	removes []string       // every Remove call, in order
}

func newMemFiles() *memFiles { return &memFiles{files: map[string]bool{}, failing: map[string]int{}} }

var memName = regexp.MustCompile(`img-[0-9]+\.png`)

func (m *memFiles) Names(text []byte) []string {
	var out []string
	for _, n := range memName.FindAll(text, -1) {
		out = append(out, string(n))
	}
	return out
}

func (m *memFiles) Remove(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removes = append(m.removes, name)
	if m.failing[name] > 0 {
		m.failing[name]--
		return errors.New("permission denied")
	}
	delete(m.files, name) // a missing file is not an error
	return nil
}

func (m *memFiles) has(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[name]
}

// imageWriter is the handler of "image" jobs: it records the artifact its
// payload names, writes it and returns its URL, as ai_image_generation does.
type imageWriter struct{ files *memFiles }

func (h imageWriter) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	var p struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		return nil, jobs.Permanent(err)
	}
	if err := jobs.HoldArtifact(ctx, p.Name); err != nil {
		return nil, err
	}
	h.files.mu.Lock()
	h.files.files[p.Name] = true
	h.files.mu.Unlock()
	return json.Marshal(map[string]string{"url": "https://jobs.example.com/files/images/" + p.Name})
}

// artifactBundle is a bundle with an engine whose reconciler sweeps
// memFiles, and the "image" job type.
type artifactBundle struct {
	*bundle
	files *memFiles
	eng   *jobs.Engine
	n     int
}

func setupArtifacts(t *testing.T, b testenv.Backend) *artifactBundle {
	x := setup(t, b)
	files := newMemFiles()
	x.registry.MustRegister("image", imageWriter{files})
	return &artifactBundle{bundle: x, files: files, eng: x.engine(jobs.Config{Artifacts: files})}
}

// drain runs every due job.
func (x *artifactBundle) drain(t *testing.T) {
	t.Helper()
	_, err := x.eng.Worker().Drain(context.Background(), time.Minute)
	require.NoError(t, err)
}

// image creates and runs an image job (a child of parent when set) and
// returns it with the name of its file.
func (x *artifactBundle) image(t *testing.T, parent *int64) (int64, string) {
	t.Helper()
	x.n++
	name := fmt.Sprintf("img-%d.png", x.n)
	job := x.create(t, jobs.CreateRequest{Type: "image", Payload: json.RawMessage(fmt.Sprintf(`{"name":%q}`, name)), ParentID: parent})
	x.drain(t)
	require.Equal(t, models.StatusCompleted, x.reload(t, job.ID).Status)
	require.True(t, x.files.has(name))
	return job.ID, name
}

// finish makes job id finished with status, age ago.
func (x *artifactBundle) finish(t *testing.T, id int64, status models.Status, age time.Duration) {
	t.Helper()
	at := x.clock.Now().Add(-age)
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).
		Updates(map[string]any{"status": status, "completed_at": at}).Error)
}

// pass runs one reconcile pass of the sweeping engine.
func (x *artifactBundle) pass(t *testing.T) jobs.ReconcileResult {
	t.Helper()
	res, err := jobs.ReconcilerOf(x.eng).Run(context.Background())
	require.NoError(t, err)
	return res
}

// rows counts the artifact records left.
func (x *artifactBundle) rows(t *testing.T) int64 {
	t.Helper()
	var n int64
	require.NoError(t, x.b.DB.Gorm.Table("job_artifacts").Count(&n).Error)
	return n
}

const week = 7 * 24 * time.Hour

// TestArtifactsGoWhenNoJobNamesThem: the file of a deleted job is deleted
// (and its record); a file another remaining job names stays until that
// job goes too; a young job's and an unfinished tree's files stay; a file
// already missing does not stop the pass.
func TestArtifactsGoWhenNoJobNamesThem(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setupArtifacts(t, b)
		old, oldName := x.image(t, nil)
		named, namedName := x.image(t, nil)
		young, youngName := x.image(t, nil)
		missing, missingName := x.image(t, nil)
		parent := x.create(t, jobs.CreateRequest{}).ID
		child, childName := x.image(t, &parent)
		// A later job (a publish) whose payload names the image's URL.
		user := x.create(t, jobs.CreateRequest{Payload: json.RawMessage(`{"imageUrls":["https://jobs.example.com/files/images/` + namedName + `"]}`)}).ID
		x.drain(t)
		require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", parent).Update("status", models.StatusProcessing).Error)

		for _, id := range []int64{old, named, missing, child} {
			x.finish(t, id, models.StatusCompleted, week+time.Hour)
		}
		x.finish(t, young, models.StatusCompleted, time.Hour)
		x.finish(t, user, models.StatusCompleted, time.Hour)
		x.files.mu.Lock()
		delete(x.files.files, missingName) // deleted by hand meanwhile
		x.files.mu.Unlock()

		res := x.pass(t)
		require.EqualValues(t, 3, res.Deleted, "old, named and missing")
		require.Equal(t, 1, res.Artifacts.Pinned, "the user's job holds the image it names")
		require.EqualValues(t, 2, res.Artifacts.Doomed)
		require.Equal(t, 2, res.Artifacts.Removed)
		require.Zero(t, res.Artifacts.Failed)
		require.False(t, x.files.has(oldName), "no job names it any more")
		require.True(t, x.files.has(namedName), "a remaining job names it")
		require.True(t, x.files.has(youngName))
		require.True(t, x.files.has(childName), "its parent has not finished")
		require.EqualValues(t, 3, x.rows(t), "named, young and child")
		var holder int64
		require.NoError(t, x.b.DB.Gorm.Table("job_artifacts").Where("name = ?", namedName).Pluck("job_id", &holder).Error)
		require.Equal(t, user, holder)

		res = x.pass(t)
		require.Zero(t, res.Artifacts.Doomed+int64(res.Artifacts.Removed+res.Artifacts.Pinned), "nothing more to do")

		// The user's job goes too: nothing names the image any more.
		x.finish(t, user, models.StatusCompleted, week+time.Hour)
		res = x.pass(t)
		require.EqualValues(t, 1, res.Deleted)
		require.Equal(t, 1, res.Artifacts.Removed)
		require.False(t, x.files.has(namedName))
		require.True(t, x.files.has(childName))
		require.EqualValues(t, 2, x.rows(t))
	})
}

// TestUnfinishedJobsKeepTheirArtifacts: a released image an unfinished
// job names (a scheduled publish) stays, pinned to it; the generating
// jobs that are still running or waiting are never swept.
func TestUnfinishedJobsKeepTheirArtifacts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setupArtifacts(t, b)
		gen, name := x.image(t, nil)
		later := x.clock.Now().Add(30 * 24 * time.Hour)
		scheduled := x.create(t, jobs.CreateRequest{ScheduledFor: &later, Payload: json.RawMessage(`{"mediaUrls":["https://jobs.example.com/files/images/` + name + `"]}`)}).ID
		x.finish(t, gen, models.StatusCompleted, week+time.Hour)
		runner, running := x.image(t, nil)
		// A running generator, as old as can be: not finished, not swept.
		require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", runner).
			Updates(map[string]any{"status": models.StatusProcessing, "completed_at": x.clock.Now().Add(-10 * week)}).Error)

		for range 3 {
			res := x.pass(t)
			require.Zero(t, res.Artifacts.Removed)
		}
		require.True(t, x.files.has(name), "the scheduled job names it")
		require.True(t, x.files.has(running))
		require.Equal(t, models.StatusScheduled, x.reload(t, scheduled).Status)
		require.Empty(t, x.files.removes)
	})
}

// TestArtifactDeleteFailureIsRetried: a failed delete is logged and
// retried by the next pass, the record kept until the file is gone.
func TestArtifactDeleteFailureIsRetried(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setupArtifacts(t, b)
		gen, name := x.image(t, nil)
		x.finish(t, gen, models.StatusFailed, 31*24*time.Hour)
		x.files.failing[name] = 1

		res := x.pass(t)
		require.EqualValues(t, 1, res.Deleted)
		require.Equal(t, 1, res.Artifacts.Failed)
		require.True(t, x.files.has(name))
		require.EqualValues(t, 1, x.rows(t), "kept for the retry")

		res = x.pass(t)
		require.Equal(t, 1, res.Artifacts.Removed)
		require.False(t, x.files.has(name))
		require.Zero(t, x.rows(t))
		require.Equal(t, []string{name, name}, x.files.removes)
	})
}

// TestArtifactLapSpansPasses: with a lap reading two jobs a pass, a
// released image is doomed only at the end of a lap that began after its
// release; a job created during the lap that names it is read by the lap
// and pins it; an image released during a lap waits for the next one.
func TestArtifactLapSpansPasses(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setupArtifacts(t, b)
		jobs.SetArtifactScan(x.eng, 2)
		gen1, name1 := x.image(t, nil)
		gen2, name2 := x.image(t, nil)
		gen3, name3 := x.image(t, nil)
		for range 5 {
			x.create(t, jobs.CreateRequest{})
		}
		x.finish(t, gen1, models.StatusCompleted, week+time.Hour)
		x.finish(t, gen2, models.StatusCompleted, week+time.Hour)

		res := x.pass(t)
		require.EqualValues(t, 2, res.Deleted)
		require.EqualValues(t, 2, res.Artifacts.Marked, "a lap starts for the two released")
		require.Zero(t, res.Artifacts.Doomed)
		// During the lap: a job naming the first image, and the third
		// image released.
		namer := x.create(t, jobs.CreateRequest{Payload: json.RawMessage(`{"text":"see ` + name1 + `"}`)}).ID
		x.finish(t, gen3, models.StatusCompleted, week+time.Hour)

		passes := 1
		for x.files.has(name2) {
			require.Less(t, passes, 20, "the second image was never deleted")
			res = x.pass(t)
			passes++
			require.Zero(t, res.Artifacts.Marked, "no lap starts while one runs")
		}
		// Jobs left: gen3, 5 plain ones and the namer, read two a pass,
		// the last read short: at least 4 passes.
		require.GreaterOrEqual(t, passes, 4)
		require.True(t, x.files.has(name1), "the job created during the lap names it")
		require.True(t, x.files.has(name3), "released during the lap: waits for the next")
		var holder int64
		require.NoError(t, x.b.DB.Gorm.Table("job_artifacts").Where("name = ?", name1).Pluck("job_id", &holder).Error)
		require.Equal(t, namer, holder)

		res = x.pass(t)
		require.EqualValues(t, 1, res.Artifacts.Marked, "the next lap, for the third image")
		for x.files.has(name3) {
			require.Less(t, passes, 40, "the third image was never deleted")
			x.pass(t)
			passes++
		}
		require.True(t, x.files.has(name1))
	})
}

// TestHoldArtifactNeedsAJob: outside a handler there is no job to hold
// the file.
func TestHoldArtifactNeedsAJob(t *testing.T) {
	require.ErrorIs(t, jobs.HoldArtifact(context.Background(), "img-1.png"), jobs.ErrNoJob)
}
