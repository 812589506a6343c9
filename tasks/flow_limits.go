package tasks

import "github.com/jobhook/jobhook/jobs"

// DefaultFlowLimits are the limits of the job types' flow keys unless an
// operator sets others (FLOW_LIMITS): one publish at a time per Instagram
// account and per Facebook Page (the Graph API answers concurrent
// publishes to one account with errors and counts them against its
// quota), and two fetches at a time per web host (politeness). OpenAI keys
// and the Meta app have no fixed limit: they follow the providers'
// signals (see jobs.PauseFlow).
func DefaultFlowLimits() []jobs.FlowLimit {
	return []jobs.FlowLimit{
		{Prefix: FlowPrefixInstagram, Concurrency: 1},
		{Prefix: FlowPrefixFacebook, Concurrency: 1},
		{Prefix: FlowPrefixHost, Concurrency: 2},
	}
}
