package tasks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// The Must-show of issue 12 on effects, in process: the fault lands at the
// exact point, after media_publish (or the Page post) returned its id and
// before that id is written, 200 times per scenario and backend. Every
// post is published once at the Graph fake, every job completes, and its
// result names the post, found already published.

// onceRuns is how many jobs each scenario runs.
const onceRuns = 200

// onceLease is the engine's lease in these tests: long enough that no
// heartbeat tick (every third of it, on the real clock) lands in a test;
// the manual clock is moved past it to let a lease expire.
const onceLease = 5 * time.Minute

var (
	onceIGUsers = []string{"17841400000000011", "17841400000000012", "17841400000000013"}
	oncePages   = []string{"102030405060711", "102030405060712"}
)

// onceWorld is one backend's engine with the publishers, on the Graph fake.
type onceWorld struct {
	b     testenv.Backend
	f     *graph.Server
	clock *jobs.ManualClock
	svc   *jobs.Service
	w     *jobs.Worker
	// restarted is another engine's worker on the same backend and queue,
	// running 8 jobs at once: the server that takes over the lost jobs.
	restarted *jobs.Worker
}

// newOnceWorld builds the engine, running concurrency jobs at once per
// drain, and the restarted one.
func newOnceWorld(t *testing.T, b testenv.Backend, concurrency int) *onceWorld {
	t.Helper()
	x := &onceWorld{b: b, f: newGraphFake(t), clock: jobs.NewManualClock(time.Now().UTC().Truncate(time.Second))}
	x.f.SetClock(x.clock.Now) // Graph's timestamps on the engine's clock
	cfg := graphTestConfig(x.f, nil)
	cfg.SaveCheckpoint = nil  // jobs.SaveCheckpoint: the job row
	cfg.Timeout = time.Minute // SQLite under -race with 200 jobs at once is slow
	reg := jobs.NewRegistry()
	reg.MustRegister(tasks.TypeSocialPublishInstagram, tasks.NewSocialPublishInstagram(cfg))
	reg.MustRegister(tasks.TypeSocialPublishFacebook, tasks.NewSocialPublishFacebook(cfg))
	reg.MustRegister(tasks.TypeScheduledPublish, tasks.NewScheduledPublish())
	kr, err := secretbox.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	engine := func(concurrency int) *jobs.Engine {
		return jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Clock: x.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Secrets: kr,
			Concurrency: concurrency, LeaseDuration: onceLease, Backoff: func(int) time.Duration { return time.Second }})
	}
	eng := engine(concurrency)
	x.svc, x.w, x.restarted = eng.Service(), eng.Worker(), engine(8).Worker()
	return x
}

// create creates job i: an Instagram image post or a Facebook Page post,
// with a caption of its own, on one of a few accounts.
func (x *onceWorld) create(t *testing.T, i int) int64 {
	t.Helper()
	caption := fmt.Sprintf("once #%d", i)
	typ, payload := tasks.TypeSocialPublishInstagram, map[string]any{
		"igUserId": onceIGUsers[i%len(onceIGUsers)], "accessToken": graphTestToken, "imageUrls": []string{"https://cdn.example.com/a.jpg"}, "caption": caption}
	if i%2 == 1 {
		typ, payload = tasks.TypeSocialPublishFacebook, map[string]any{"pageId": oncePages[(i/2)%len(oncePages)], "accessToken": graphTestToken, "message": caption}
	}
	raw, _ := json.Marshal(payload)
	job, _, err := x.svc.Create(context.Background(), jobs.CreateRequest{UserID: "u1", Type: typ, Payload: raw, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return job.ID
}

func (x *onceWorld) drain(t *testing.T) { x.drainWith(t, x.w) }

func (x *onceWorld) drainWith(t *testing.T, w *jobs.Worker) {
	t.Helper()
	if _, err := w.Drain(context.Background(), jobs.DefaultDrainBudget); err != nil {
		t.Fatal(err)
	}
}

// onceResult is the part of both publishers' results these tests read.
type onceResult struct {
	Publish string `json:"publish"`
	MediaID string `json:"mediaId"`
	PostID  string `json:"postId"`
}

func (r onceResult) id() string { return r.MediaID + r.PostID }

// requireOnce checks the end state: every job completed, every post
// published once at the fake (per account, and as a whole), and every
// result naming its own post (job i's caption is "once #i", or caption
// when set) with the publish state want.
func (x *onceWorld) requireOnce(t *testing.T, ids []int64, want, caption string) {
	t.Helper()
	pubs := x.f.Publications()
	byID := map[string]graph.Publication{}
	for _, p := range pubs {
		if _, dup := byID[p.ID]; dup {
			t.Fatalf("post %s published twice", p.ID)
		}
		byID[p.ID] = p
	}
	if len(pubs) != len(ids) || x.f.DuplicatePublishes() != 0 {
		t.Fatalf("%d posts published for %d jobs, %d duplicate media_publish calls", len(pubs), len(ids), x.f.DuplicatePublishes())
	}
	perAccount := map[string]int{}
	for i, id := range ids {
		var row models.Job
		if err := x.b.DB.Gorm.First(&row, id).Error; err != nil {
			t.Fatal(err)
		}
		if row.Status != models.StatusCompleted {
			t.Fatalf("job %d (run %d): status %s, error %q", id, i, row.Status, row.Error)
		}
		var res onceResult
		if err := json.Unmarshal(row.Result, &res); err != nil {
			t.Fatalf("job %d: result %s: %v", id, row.Result, err)
		}
		p, ok := byID[res.id()]
		text := caption
		if text == "" {
			text = fmt.Sprintf("once #%d", i)
		}
		if res.Publish != want || !ok || p.Text != text {
			t.Fatalf("job %d (run %d): result %s, want publish %q naming its post (%+v)", id, i, row.Result, want, p)
		}
		perAccount[p.Account]++
	}
	for _, acct := range append(append([]string(nil), onceIGUsers...), oncePages...) {
		if got, want := x.f.PublishedCount(acct), perAccount[acct]; got != want {
			t.Errorf("account %s: %d posts published, %d jobs", acct, got, want)
		}
	}
}

// idWriteFault runs fault at the write of an effect's provider id (the
// statement of jobs.Effect that follows a step's return), before it is
// sent, once per job: the exact point between the step and its outcome.
// fault may fail the write (an error) or stand for the attempt's loss.
func idWriteFault(t *testing.T, db *gorm.DB, fault func(tx *gorm.DB, jobID int64) error) {
	t.Helper()
	var mu sync.Mutex
	done := map[int64]bool{}
	err := db.Callback().Raw().Before("gorm:raw").Register("test:effect_id_fault", func(tx *gorm.DB) {
		sql := tx.Statement.SQL.String()
		if !strings.HasPrefix(sql, "UPDATE job_effects SET status") || len(tx.Statement.Vars) < 5 {
			return
		}
		jobID, _ := tx.Statement.Vars[4].(int64)
		mu.Lock()
		first := !done[jobID]
		done[jobID] = true
		mu.Unlock()
		if first {
			if err := fault(tx, jobID); err != nil {
				_ = tx.AddError(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Callback().Raw().Remove("test:effect_id_fault") })
}

// The process is lost after the step returned and before its id is
// written: every attempt stops there (the fault holds it, as a process
// that froze or died holds nothing more) while its lease expires; the next
// drain reaps the jobs and runs them again, and those attempts check
// Graph, find the posts and adopt them. When the lost attempts go on,
// their writes are fenced out (the jobs are other attempts'): they record
// nothing. All 200 jobs run at once.
func TestPublishOnceWhenTheProcessIsLostAfterThePublish(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := newOnceWorld(t, b, onceRuns)
		release := make(chan struct{})
		var held atomic.Int32
		idWriteFault(t, b.DB.Gorm, func(*gorm.DB, int64) error {
			held.Add(1)
			<-release
			return nil
		})
		ids := make([]int64, onceRuns)
		for i := range ids {
			ids[i] = x.create(t, i)
		}
		first := make(chan error, 1)
		go func() {
			_, err := x.w.Drain(ctx, jobs.DefaultDrainBudget)
			first <- err
		}()
		defer func() {
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		for deadline := time.Now().Add(time.Minute); held.Load() < onceRuns; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d attempts reached the id write", held.Load(), onceRuns)
			}
		}
		if n := len(x.f.Publications()); n != onceRuns {
			t.Fatalf("%d posts published before the fault, want %d", n, onceRuns)
		}
		x.clock.Advance(2 * onceLease) // the lost attempts' leases run out
		x.drainWith(t, x.restarted)    // reaps them, and runs the next attempts
		x.requireOnce(t, ids, tasks.PublishAdopted, "")
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		x.requireOnce(t, ids, tasks.PublishAdopted, "") // the lost attempts changed nothing
		var lost int64
		if err := b.DB.Gorm.Model(&models.JobAttempt{}).Where("outcome = ?", "lost").Count(&lost).Error; err != nil {
			t.Fatal(err)
		}
		if lost != onceRuns {
			t.Errorf("%d attempts recorded lost, want %d", lost, onceRuns)
		}
	})
}

// The write of the id fails after the step returned: the attempt fails
// (retried), and the retry checks Graph, finds the post and adopts it.
// The jobs run four at a time.
func TestPublishOnceWhenTheIDWriteFails(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := newOnceWorld(t, b, 8)
		idWriteFault(t, b.DB.Gorm, func(*gorm.DB, int64) error {
			return errors.New("injected: the write of the provider id failed")
		})
		ids := make([]int64, onceRuns)
		for i := range ids {
			ids[i] = x.create(t, i)
		}
		x.drain(t)
		var retried int64
		if err := b.DB.Gorm.Model(&models.Job{}).Where("status = ? AND error LIKE ?", models.StatusPending, "%injected%").Count(&retried).Error; err != nil {
			t.Fatal(err)
		}
		if retried != onceRuns {
			t.Fatalf("%d jobs waiting for a retry after the failed id write, want %d", retried, onceRuns)
		}
		x.clock.Advance(2 * time.Second)
		x.drain(t)
		x.requireOnce(t, ids, tasks.PublishAdopted, "")
	})
}

// scheduled_publish's children are the same publishers: a child whose id
// write failed is retried, adopts its post, and the parent reports every
// target with its post id.
func TestScheduledPublishChildrenPublishOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := newOnceWorld(t, b, 4)
		idWriteFault(t, b.DB.Gorm, func(*gorm.DB, int64) error {
			return errors.New("injected: the write of the provider id failed")
		})
		payload, _ := json.Marshal(map[string]any{
			"caption": "once #0", "mediaUrls": []string{"https://cdn.example.com/a.jpg"},
			"targets": []map[string]string{
				{"network": "instagram", "accountId": onceIGUsers[0], "accessToken": graphTestToken},
				{"network": "facebook", "accountId": oncePages[0], "accessToken": graphTestToken},
			},
		})
		parent, _, err := x.svc.Create(context.Background(), jobs.CreateRequest{UserID: "u1", Type: tasks.TypeScheduledPublish, Payload: payload, MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		var row models.Job
		for i := 0; i < 20; i++ {
			x.drain(t)
			if err := b.DB.Gorm.First(&row, parent.ID).Error; err != nil {
				t.Fatal(err)
			}
			if row.Status == models.StatusCompleted || row.Status == models.StatusFailed {
				break
			}
			x.clock.Advance(2 * time.Minute) // past the retry backoff and the parent's poll
		}
		if row.Status != models.StatusCompleted {
			t.Fatalf("scheduled_publish: status %s, error %q", row.Status, row.Error)
		}
		var res tasks.ScheduledPublishResult
		if err := json.Unmarshal(row.Result, &res); err != nil || res.Published != 2 || len(res.Targets) != 2 {
			t.Fatalf("result %s: %v", row.Result, err)
		}
		var childIDs []int64
		for _, target := range res.Targets {
			var r onceResult
			if err := json.Unmarshal(target.Result, &r); err != nil || r.Publish != tasks.PublishAdopted || r.id() == "" {
				t.Errorf("target %s %s: result %s", target.Network, target.AccountID, target.Result)
			}
			childIDs = append(childIDs, target.JobID)
		}
		x.requireOnce(t, childIDs, tasks.PublishAdopted, "once #0")
	})
}

// Two jobs post the same message to one Page a moment apart, and the
// second one's answer is lost: its retry finds both posts at the Page and
// adopts its own, not the first job's (which that job recorded).
func TestPublishOnceSameMessageTwice(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := newOnceWorld(t, b, 1)
		create := func() int64 {
			raw, _ := json.Marshal(map[string]any{"pageId": oncePages[0], "accessToken": graphTestToken, "message": "once #0"})
			job, _, err := x.svc.Create(context.Background(), jobs.CreateRequest{UserID: "u1", Type: tasks.TypeSocialPublishFacebook, Payload: raw, MaxAttempts: 3})
			if err != nil {
				t.Fatal(err)
			}
			return job.ID
		}
		first := create()
		x.drain(t)
		x.clock.Advance(10 * time.Second)
		x.f.DropAnswerNextOf(graph.CallFeed, 1)
		second := create()
		x.drain(t)
		x.clock.Advance(2 * time.Second)
		x.drain(t)
		var a, b2 models.Job
		if err := b.DB.Gorm.First(&a, first).Error; err != nil {
			t.Fatal(err)
		}
		if err := b.DB.Gorm.First(&b2, second).Error; err != nil {
			t.Fatal(err)
		}
		var ra, rb onceResult
		_ = json.Unmarshal(a.Result, &ra)
		_ = json.Unmarshal(b2.Result, &rb)
		pubs := x.f.Publications()
		if len(pubs) != 2 || ra.id() != pubs[0].ID || rb.id() != pubs[1].ID || rb.Publish != tasks.PublishAdopted {
			t.Errorf("results %s and %s, posts %+v", a.Result, b2.Result, pubs)
		}
	})
}
