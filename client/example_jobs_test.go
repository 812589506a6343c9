package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/models"
)

// ExampleJobsClient lists the failed jobs as the operator and retries
// each. The stand-in server here answers like jobhook (without checking
// the token); a real one is addressed by its URL, with its ADMIN_TOKEN.
func ExampleJobsClient() {
	answer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/jobs", answer(`{"jobs":[{"id":7,"type":"web_scraping","userId":"alice","status":"failed","error":"connection refused"}]}`))
	mux.Handle("POST /api/jobs/7/retry", answer(`{"id":7,"type":"web_scraping","userId":"alice","status":"pending"}`))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	jc, err := client.NewJobsClient(srv.URL, "my-admin-token", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	page, err := jc.List(ctx, client.ListOptions{Status: models.StatusFailed})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, j := range page.Jobs {
		retried, err := jc.Retry(ctx, j.ID)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("job %d (%s): %s → %s\n", j.ID, j.Error, j.Status, retried.Status)
	}
	// Output: job 7 (connection refused): failed → pending
}
