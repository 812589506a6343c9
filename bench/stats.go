package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// probe is what every system's no-op handler calls when it starts: it
// counts the calls, closes done when the armed number is reached, and
// records insert-to-handler-start latencies while recording is on.
type probe struct {
	mu        sync.Mutex
	target    int64
	done      chan struct{}
	recording bool
	latencies []time.Duration
	count     atomic.Int64
}

// arm resets the probe to wait for n handler calls; record turns on the
// latency recording.
func (p *probe) arm(n int, record bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count.Store(0)
	p.target = int64(n)
	p.done = make(chan struct{})
	p.recording = record
	p.latencies = p.latencies[:0]
	return p.done
}

// hit is called by a handler at its start with the insert time carried in
// the job's payload (Unix nanoseconds, 0 when none).
func (p *probe) hit(sentNanos int64) {
	now := time.Now().UnixNano()
	p.mu.Lock()
	if p.recording && sentNanos > 0 {
		p.latencies = append(p.latencies, time.Duration(now-sentNanos))
	}
	target, done := p.target, p.done
	p.mu.Unlock()
	if p.count.Add(1) == target {
		close(done)
	}
}

// recorded returns the latencies recorded since arm, sorted.
func (p *probe) recorded() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.latencies)
	slices.Sort(out)
	return out
}

// percentile returns the q-th percentile (0–100) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q / 100 * float64(len(sorted)-1))
	return sorted[i]
}

// unit says how a metric is shown and which way is better.
type unit int

const (
	perSecond    unit = iota // jobs per second; higher is better
	milliseconds             // a latency; lower is better
	perJob                   // a count per job; lower is better
)

// metric is one row of the report: one value per round for each system.
type metric struct {
	name   string
	unit   unit
	values map[string][]float64 // system name → one value per round
	notes  map[string]string    // system name → why there is no value
}

// results collects every metric in the order they were first added.
type results struct {
	order   []string
	metrics map[string]*metric
}

func newResults() *results { return &results{metrics: map[string]*metric{}} }

func (r *results) get(name string, u unit) *metric {
	m, ok := r.metrics[name]
	if !ok {
		m = &metric{name: name, unit: u, values: map[string][]float64{}, notes: map[string]string{}}
		r.metrics[name] = m
		r.order = append(r.order, name)
	}
	return m
}

// add records one round's value of a metric for a system.
func (r *results) add(name string, u unit, system string, v float64) {
	m := r.get(name, u)
	m.values[system] = append(m.values[system], v)
}

// note records why a system has no value for a metric.
func (r *results) note(name string, u unit, system, why string) {
	r.get(name, u).notes[system] = why
}

// summary is min, median and max of a metric's rounds.
type summary struct{ min, median, max float64 }

func summarize(vs []float64) (summary, bool) {
	if len(vs) == 0 {
		return summary{}, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{min: s[0], median: med, max: s[len(s)-1]}, true
}

func format(v float64, u unit) string {
	switch u {
	case milliseconds:
		return fmt.Sprintf("%.2f", v)
	case perJob:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// print writes the table: per metric and system the median with min and
// max, and the ratios of jobhook's median to River's and asynq's.
func (r *results) print(w io.Writer, systems []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"metric"}
	for _, s := range systems {
		header = append(header, s+" median", "(min–max)")
	}
	header = append(header, "jobhook/river", "jobhook/asynq", "")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, name := range r.order {
		m := r.metrics[name]
		if len(m.values) == 0 && len(m.notes) == 0 {
			continue
		}
		unitName := map[unit]string{perSecond: "jobs/s", milliseconds: "ms", perJob: "per job"}[m.unit]
		row := []string{fmt.Sprintf("%s (%s)", m.name, unitName)}
		medians := map[string]float64{}
		for _, s := range systems {
			sum, ok := summarize(m.values[s])
			switch {
			case ok:
				medians[s] = sum.median
				row = append(row, format(sum.median, m.unit), fmt.Sprintf("(%s–%s)", format(sum.min, m.unit), format(sum.max, m.unit)))
			case m.notes[s] != "":
				row = append(row, m.notes[s], "")
			default:
				row = append(row, "—", "")
			}
		}
		for _, other := range []string{"river", "asynq"} {
			a, okA := medians["jobhook"]
			b, okB := medians[other]
			if okA && okB && b > 0 {
				row = append(row, fmt.Sprintf("%.2f", a/b))
			} else {
				row = append(row, "")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}
