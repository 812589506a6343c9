package tasks_test

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// memEffects stands in for jobs.Effect in the tests that call a
// publisher's Handle directly (no worker, no job row): it keeps one job's
// effects in memory with jobs.Effect's rules (done: returned; intent:
// checked, then adopted or run again). The worker tests use jobs.Effect
// itself.
type memEffects struct {
	mu   sync.Mutex
	rows map[string]*memEffect
}

type memEffect struct {
	id string
	at time.Time
}

func newMemEffects() *memEffects { return &memEffects{rows: map[string]*memEffect{}} }

func (m *memEffects) run(ctx context.Context, name, key string, do jobs.EffectFunc, check jobs.EffectCheckFunc) (jobs.EffectOutcome, error) {
	m.mu.Lock()
	r := m.rows[name+"/"+key]
	m.mu.Unlock()
	if r != nil && r.id != "" {
		return jobs.EffectOutcome{ProviderID: r.id, Source: jobs.EffectRecorded}, nil
	}
	if r != nil {
		id, found, err := check(ctx, jobs.EffectIntent{Name: name, Key: key, Attempt: 1, At: r.at})
		if err != nil {
			return jobs.EffectOutcome{}, err
		}
		if found {
			m.set(name, key, &memEffect{id: id, at: r.at})
			return jobs.EffectOutcome{ProviderID: id, Source: jobs.EffectAdopted}, nil
		}
	}
	at := time.Now()
	m.set(name, key, &memEffect{at: at})
	id, err := do(ctx)
	if err != nil {
		return jobs.EffectOutcome{}, err
	}
	if id == "" {
		return jobs.EffectOutcome{}, errors.New("no id")
	}
	m.set(name, key, &memEffect{id: id, at: at})
	return jobs.EffectOutcome{ProviderID: id, Source: jobs.EffectRan}, nil
}

func (m *memEffects) set(name, key string, e *memEffect) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[name+"/"+key] = e
}

// loseIDs forgets the ids recorded, keeping the intents: as when the
// write of the id was lost.
func (m *memEffects) loseIDs() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rows {
		r.id = ""
	}
}
