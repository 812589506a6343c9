package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/jobhook/jobhook/client"
)

// ExampleTriggerWorker calls a server's worker endpoint and waits until
// job 42 is finished. The stand-in server here completes the job on the
// first worker call; a real one is addressed by its PUBLIC_URL.
func ExampleTriggerWorker() {
	done := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer my-worker-secret":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"invalid_worker_auth","message":"the worker secret is wrong"}}`)
		case r.Method == http.MethodPost: // POST /api/workers
			done = true
			fmt.Fprint(w, `{"claimed":1,"completed":1}`)
		case done: // GET /api/workers/jobs/42
			fmt.Fprint(w, `{"id":42,"status":"completed","result":{"title":"Example Domain"}}`)
		default:
			fmt.Fprint(w, `{"id":42,"status":"pending"}`)
		}
	}))
	defer srv.Close()

	res, err := client.TriggerWorker(context.Background(), client.Options{
		URL:          srv.URL,
		WorkerSecret: "my-worker-secret",
		WaitForJobID: 42,
		Timeout:      30 * time.Second,
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(res.Success, res.Message)
	fmt.Println(string(res.Result))
	// Output:
	// true job 42 completed
	// {"title":"Example Domain"}
}
