package dashboard

import (
	"fmt"
	"html/template"
	"strings"

	"github.com/jobhook/jobhook/jobs"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 200
	chartLeft   = 40 // room for the y labels
	chartBottom = 24 // room for the x labels
	chartTop    = 10
)

// throughputChart draws the jobs finished per minute as an inline SVG:
// one bar per minute, completed stacked under failed (and cancelled), a
// y axis scaled to the busiest minute, and x labels every 15 minutes.
// Only presentation attributes are used (no style attributes), so the
// content security policy needs no inline-style allowance.
func throughputChart(minutes []jobs.MinuteCount) template.HTML {
	var peak int64
	for _, m := range minutes {
		peak = max(peak, m.Completed+m.Failed+m.Cancelled)
	}
	scale := niceCeil(peak)
	plotW := float64(chartWidth - chartLeft - 4)
	plotH := float64(chartHeight - chartTop - chartBottom)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">`, chartWidth, chartHeight)
	b.WriteString(`<title id="chart-title">Jobs finished per minute over the last hour: completed and failed</title>`)
	for i := 0; i <= 4; i++ {
		y := float64(chartTop) + plotH*float64(4-i)/4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd" stroke-width="1"/>`, chartLeft, y, chartWidth-4, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#555">%d</text>`, chartLeft-4, y+3, scale*int64(i)/4)
	}
	if n := len(minutes); n > 0 {
		slot := plotW / float64(n)
		barW := max(slot-1, 1)
		for i, m := range minutes {
			x := float64(chartLeft) + slot*float64(i)
			base := float64(chartTop) + plotH
			for _, part := range []struct {
				n     int64
				color string
				label string
			}{{m.Completed, "#2e7d32", "completed"}, {m.Failed, "#c62828", "failed"}, {m.Cancelled, "#9e9e9e", "cancelled"}} {
				if part.n == 0 || scale == 0 {
					continue
				}
				h := plotH * float64(part.n) / float64(scale)
				base -= h
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" class="bar-%s"><title>%s: %d %s</title></rect>`,
					x, base, barW, h, part.color, part.label, m.Start.UTC().Format("15:04"), part.n, part.label)
			}
			switch {
			case i == n-1:
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="end" fill="#555">%s</text>`, x+barW, chartHeight-8, m.Start.UTC().Format("15:04"))
			case i%15 == 0 && i < n-5:
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#555">%s</text>`, x, chartHeight-8, m.Start.UTC().Format("15:04"))
			}
		}
	}
	b.WriteString(`</svg>`)
	// Every value written is a number or a fixed string: safe as HTML.
	return template.HTML(b.String()) //nolint:gosec // built from numbers and constants only
}

// niceCeil rounds a bar chart's peak up to four grid steps of a round
// size (1, 2 or 5 times a power of ten): 5 → 8, 17 → 20, 41 → 80.
func niceCeil(n int64) int64 {
	need := max((n+3)/4, 1)
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= need {
				return 4 * m * p
			}
		}
	}
}
