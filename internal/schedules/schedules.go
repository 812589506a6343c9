// Package schedules reads qstash.schedules.json, the schedules jobhook wants
// QStash to run, and makes QStash match it: it creates what is missing,
// updates what differs, deletes the schedules jobhook created that the file
// no longer has, and never touches a schedule it did not create (one whose
// id does not start with IDPrefix).
package schedules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/upstash/qstash-go"

	"github.com/jobhook/jobhook/internal/qstashclient"
)

// DefaultFile is the schedules file's name, at the repository root.
const DefaultFile = "qstash.schedules.json"

// IDPrefix marks the schedules jobhook manages: their QStash id is
// IDPrefix + the entry's name.
const IDPrefix = "jobhook-"

// MaxRetries bounds an entry's retries.
const MaxRetries = 5

// File is the content of qstash.schedules.json.
type File struct {
	Schedules []Entry `json:"schedules"`
}

// Entry is one schedule.
type Entry struct {
	// Name identifies the entry: lower-case letters, digits, '-', '_' and
	// '.', at most 64 characters, unique in the file.
	Name string `json:"name"`
	// Cron is a standard 5-field cron expression, evaluated in UTC unless
	// prefixed with CRON_TZ=<zone>.
	Cron string `json:"cron"`
	// Path is the path on PUBLIC_URL that QStash calls, such as
	// "/api/workers".
	Path string `json:"path"`
	// Method defaults to POST.
	Method string `json:"method,omitempty"`
	// Body is the JSON body sent; defaults to {}.
	Body json.RawMessage `json:"body,omitempty"`
	// Retries is how often QStash retries a failed call (0–5). Defaults
	// to 0: the next tick comes soon enough.
	Retries int `json:"retries,omitempty"`
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	pathRE     = regexp.MustCompile(`^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$`)
	methods    = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}
	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
)

// Load reads and validates a schedules file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and validates a schedules file. Every problem is reported,
// each naming its entry.
func Parse(data []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a valid schedules file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a valid schedules file: data after the JSON object")
	}
	var problems []string
	seen := map[string]int{}
	for i := range f.Schedules {
		e := &f.Schedules[i]
		where := fmt.Sprintf("schedules[%d]", i)
		if e.Name != "" {
			where += fmt.Sprintf(" (%q)", e.Name)
		}
		bad := func(format string, args ...any) {
			problems = append(problems, where+": "+fmt.Sprintf(format, args...))
		}
		if !nameRE.MatchString(e.Name) {
			bad("name must be 1–64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
		} else if j, dup := seen[e.Name]; dup {
			bad("name is already used by schedules[%d]", j)
		} else {
			seen[e.Name] = i
		}
		if e.Cron == "" {
			bad("cron is required")
		} else if sched, err := cronParser.Parse(e.Cron); err != nil {
			bad("cron %q: %v", e.Cron, err)
		} else if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
			bad("cron %q never fires", e.Cron)
		}
		if !pathRE.MatchString(e.Path) || strings.Contains(e.Path, "//") {
			bad("path %q must be an absolute path on PUBLIC_URL such as /api/workers", e.Path)
		}
		e.Method = strings.ToUpper(e.Method)
		if e.Method == "" {
			e.Method = "POST"
		}
		if !methods[e.Method] {
			bad("method %q must be GET, POST, PUT, PATCH or DELETE", e.Method)
		}
		if len(e.Body) == 0 {
			e.Body = json.RawMessage(`{}`)
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, e.Body); err != nil {
				bad("body is not valid JSON")
			} else {
				e.Body = buf.Bytes()
			}
		}
		if e.Retries < 0 || e.Retries > MaxRetries {
			bad("retries must be 0–%d", MaxRetries)
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &f, nil
}

// Spec is the schedule an entry asks QStash for.
func (e Entry) Spec(publicURL string) qstashclient.ScheduleSpec {
	return qstashclient.ScheduleSpec{
		ID:          IDPrefix + e.Name,
		Cron:        e.Cron,
		Destination: strings.TrimRight(publicURL, "/") + e.Path,
		Method:      e.Method,
		Body:        string(e.Body),
		Retries:     e.Retries,
	}
}

// Change is one step of a sync.
type Change struct {
	// Op is "create", "update", "delete" or "keep".
	Op   string
	ID   string
	Spec qstashclient.ScheduleSpec
	// Why says what differs, for updates.
	Why string
}

// API is what a sync needs of QStash; *qstashclient.Client has it.
type API interface {
	ListSchedules(ctx context.Context) ([]qstash.Schedule, error)
	UpsertSchedule(ctx context.Context, s qstashclient.ScheduleSpec) error
	DeleteSchedule(ctx context.Context, id string) error
}

// Plan compares the file with QStash's schedules and lists the changes, in
// a stable order. Schedules whose id lacks IDPrefix are left out.
func Plan(f *File, existing []qstash.Schedule, publicURL string) []Change {
	ours := map[string]qstash.Schedule{}
	for _, s := range existing {
		if strings.HasPrefix(s.Id, IDPrefix) {
			ours[s.Id] = s
		}
	}
	var changes []Change
	wanted := map[string]bool{}
	for _, e := range f.Schedules {
		spec := e.Spec(publicURL)
		wanted[spec.ID] = true
		cur, ok := ours[spec.ID]
		switch {
		case !ok:
			changes = append(changes, Change{Op: "create", ID: spec.ID, Spec: spec})
		default:
			if why := differs(cur, spec); why != "" {
				changes = append(changes, Change{Op: "update", ID: spec.ID, Spec: spec, Why: why})
			} else {
				changes = append(changes, Change{Op: "keep", ID: spec.ID, Spec: spec})
			}
		}
	}
	var gone []string
	for id := range ours {
		if !wanted[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		changes = append(changes, Change{Op: "delete", ID: id, Spec: qstashclient.ScheduleSpec{ID: id, Cron: ours[id].Cron, Destination: ours[id].Destination}})
	}
	return changes
}

func differs(cur qstash.Schedule, want qstashclient.ScheduleSpec) string {
	var d []string
	if cur.Cron != want.Cron {
		d = append(d, fmt.Sprintf("cron %q → %q", cur.Cron, want.Cron))
	}
	if cur.Destination != want.Destination {
		d = append(d, fmt.Sprintf("destination %s → %s", cur.Destination, want.Destination))
	}
	if m := strings.ToUpper(cur.Method); m != want.Method && !(m == "" && want.Method == "POST") {
		d = append(d, fmt.Sprintf("method %s → %s", cur.Method, want.Method))
	}
	if !sameJSON(cur.Body, want.Body) {
		d = append(d, "body")
	}
	if int(cur.Retries) != want.Retries {
		d = append(d, fmt.Sprintf("retries %d → %d", cur.Retries, want.Retries))
	}
	return strings.Join(d, ", ")
}

func sameJSON(a, b string) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, []byte(a)) != nil || json.Compact(&y, []byte(b)) != nil {
		return a == b
	}
	return x.String() == y.String()
}

// Sync plans and, unless dryRun, applies the changes. It returns the plan.
func Sync(ctx context.Context, api API, f *File, publicURL string, dryRun bool) ([]Change, error) {
	existing, err := api.ListSchedules(ctx)
	if err != nil {
		return nil, err
	}
	changes := Plan(f, existing, publicURL)
	if dryRun {
		return changes, nil
	}
	for _, c := range changes {
		switch c.Op {
		case "create", "update":
			err = api.UpsertSchedule(ctx, c.Spec)
		case "delete":
			err = api.DeleteSchedule(ctx, c.ID)
		}
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}
