package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/tasks"
)

// TestKill9RightAfterThePublish runs Instagram and Facebook publishing
// jobs against the Graph fake (in this process, at GRAPH_API_BASE_URL) and
// kills the serving process with SIGKILL right after a post took effect at
// the fake and before its answer reached the server: the publish happened,
// and nothing of it was written. Three processes in a row die that way at
// their first publish; a fourth finishes. Every post is published exactly
// once at the fake (per account and as a whole), every job completes, and
// its result names its post: the killed publishes as found already
// published ("adopted"), the others as published.
func TestKill9RightAfterThePublish(t *testing.T) {
	const (
		igJobs = 12
		fbJobs = 8
		kills  = 3
		token  = "EAAchaos0token"
	)
	s := newScenario(t)
	f := graph.New()
	f.Token = token
	t.Cleanup(f.Close)

	// The hook holds every publish until all the jobs exist (so that no
	// create goes to a dead server), then kills the current process at its
	// first publish, kills times.
	gate := make(chan struct{})
	killed := make(chan graph.Publication, kills)
	var (
		mu     sync.Mutex
		cur    *proc
		victim *proc
		n      int
	)
	f.OnPublished(func(p graph.Publication) {
		<-gate
		mu.Lock()
		target := cur
		doKill := n < kills && target != nil && target != victim
		if doKill {
			victim = target
			n++
		}
		mu.Unlock()
		if !doKill {
			return
		}
		_ = target.cmd.Process.Kill()
		<-target.done // the answer is never written: the connection dies with the process
		killed <- p
	})
	env := "GRAPH_API_BASE_URL=" + f.URL
	start := func(name string) {
		p := s.start(name, env)
		mu.Lock()
		cur = p
		mu.Unlock()
	}
	start("serve-1")

	accounts := map[string]int{}
	jobIDs := map[int64]string{} // job → its caption
	for i := 0; i < igJobs+fbJobs; i++ {
		caption := fmt.Sprintf("chaos once #%d", i)
		typ, payload := tasks.TypeSocialPublishInstagram, map[string]any{
			"igUserId": fmt.Sprintf("1784140000000010%d", i%3), "accessToken": token, "imageUrls": []string{"https://cdn.example.com/a.jpg"}, "caption": caption}
		account := payload["igUserId"].(string)
		if i >= igJobs {
			account = fmt.Sprintf("10203040506070%d", i%2)
			typ, payload = tasks.TypeSocialPublishFacebook, map[string]any{"pageId": account, "accessToken": token, "message": caption}
		}
		accounts[account]++
		jobIDs[s.createTyped(cur, typ, payload)] = caption
	}
	close(gate)

	var adoptedWant []graph.Publication
	for i := 0; i < kills; i++ {
		select {
		case p := <-killed:
			adoptedWant = append(adoptedWant, p)
		case <-time.After(60 * time.Second):
			t.Fatalf("chaos: kill %d: no publish within 60s", i+1)
		}
		start(fmt.Sprintf("serve-%d", i+2))
	}
	s.waitAllCompleted(int64(len(jobIDs)), 120*time.Second)
	s.stopAll()

	pubs := f.Publications()
	byID := map[string]graph.Publication{}
	for _, p := range pubs {
		if _, dup := byID[p.ID]; dup {
			t.Errorf("post %s published twice", p.ID)
		}
		byID[p.ID] = p
	}
	if len(pubs) != len(jobIDs) || f.DuplicatePublishes() != 0 {
		t.Errorf("%d posts published for %d jobs, %d duplicate media_publish calls", len(pubs), len(jobIDs), f.DuplicatePublishes())
	}
	for account, want := range accounts {
		if got := f.PublishedCount(account); got != want {
			t.Errorf("account %s: %d posts published, %d jobs", account, got, want)
		}
	}
	var results []struct {
		ID     int64           `gorm:"column:id"`
		Result json.RawMessage `gorm:"column:result"`
	}
	if err := s.db.Raw("SELECT id, result FROM jobs ORDER BY id").Scan(&results).Error; err != nil {
		t.Fatalf("chaos: %v", err)
	}
	state := map[string]string{} // post id → the publish state its job reported
	adopted := 0
	for _, r := range results {
		var res struct {
			Publish string `json:"publish"`
			MediaID string `json:"mediaId"`
			PostID  string `json:"postId"`
		}
		if err := json.Unmarshal(r.Result, &res); err != nil {
			t.Errorf("job %d: result %s: %v", r.ID, r.Result, err)
			continue
		}
		id := res.MediaID + res.PostID
		if p, ok := byID[id]; !ok || p.Text != jobIDs[r.ID] || (res.Publish != tasks.PublishPublished && res.Publish != tasks.PublishAdopted) {
			t.Errorf("job %d: result %s does not name its post (%q)", r.ID, r.Result, jobIDs[r.ID])
		}
		state[id] = res.Publish
		if res.Publish == tasks.PublishAdopted {
			adopted++
		}
	}
	for _, p := range adoptedWant {
		if state[p.ID] != tasks.PublishAdopted {
			t.Errorf("post %s, published as the server was killed: its job reports %q, want adopted", p.ID, state[p.ID])
		}
	}
	summary(t, "jobs=%d posts=%d duplicates=%d kills=%d adopted=%d (killed at their publish: %d)",
		len(jobIDs), len(pubs), f.DuplicatePublishes(), kills, adopted, len(adoptedWant))
}

// createTyped creates a job of any type through the API of p and returns
// its id, failing the test unless the answer is 201.
func (s *scenario) createTyped(p *proc, typ string, payload any) int64 {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"type": typ, "payload": payload, "maxAttempts": 3})
	req, err := http.NewRequest(http.MethodPost, p.url+"/api/jobs", strings.NewReader(string(body)))
	if err != nil {
		s.t.Fatalf("chaos: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("chaos: create a %s job: %v", typ, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var doc struct {
		JobID int64 `json:"jobId"`
	}
	if res.StatusCode != http.StatusCreated || json.Unmarshal(raw, &doc) != nil || doc.JobID == 0 {
		s.t.Fatalf("chaos: create a %s job: %d %s", typ, res.StatusCode, raw)
	}
	return doc.JobID
}
