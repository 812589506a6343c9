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
// each. The stand-in server here answers like jobhook; a real one is
// addressed by its URL, with its ADMIN_TOKEN.
func ExampleJobsClient() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer my-admin-token":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"invalid_token","message":"the token is not valid"}}`)
		case r.Method == http.MethodGet: // GET /api/jobs?status=failed
			fmt.Fprint(w, `{"jobs":[{"id":7,"type":"web_scraping","userId":"alice","status":"failed","error":"connection refused"}]}`)
		default: // POST /api/jobs/7/retry
			fmt.Fprint(w, `{"id":7,"type":"web_scraping","userId":"alice","status":"pending"}`)
		}
	}))
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
