// Package health decides, from what was observed of each instance, which
// instances are unhealthy and why, whether remediation may go ahead (the
// max_unhealthy gate, BOSH's meltdown), whether resurrection is enabled for
// a deployment and instance group (resurrection rules), and whether an
// instance's retry budget allows another remediation now.
//
// It is pure: no clock (now is passed in), no files, no network, no
// goroutines. A test fails if it imports an I/O package. The observing and
// the remediating live in pkg/converge.
package health

import (
	"fmt"
	"sort"
	"time"
)

// Reason says why an instance is unhealthy; the names are BOSH's cck problems
// where one exists.
type Reason string

const (
	ReasonMissingVM    Reason = "missing_vm"         // the CPI says the VM is gone
	ReasonUnresponsive Reason = "unresponsive_agent" // the agent has not answered for the agent timeout
	ReasonFailingJob   Reason = "failing_job"        // a job has been failing longer than the grace period
)

// Target is an instance that should be running.
type Target struct {
	Deployment string
	Group      string
	Index      int
	UUID       string
	// HasVM is false for an instance the state records without a VM
	// (detached, or never created): it is not checked.
	HasVM bool
	// Stopped instances (desired state stopped or detached) are not checked
	// for failing jobs.
	Stopped bool
	Ignore  bool // `kpaas ignore`: never remediated
}

// Name is group/index.
func (t Target) Name() string { return fmt.Sprintf("%s/%d", t.Group, t.Index) }

// Observation is what the observer knows of one instance.
type Observation struct {
	// WatchedSince is when the observer started watching the instance (the
	// agent timeout counts from here while the agent has never answered).
	WatchedSince time.Time
	// LastAnswer is the last time its agent answered get_state.
	LastAnswer time.Time
	// VMGone is set when the CPI's has_vm said false.
	VMGone bool
	// JobState is the agent's last job_state (running, failing, stopped).
	JobState string
	// FailingSince is when the job state turned from running to anything
	// else: failing, starting, stopped, unknown (zero while it is running). A running answer resets it, which is
	// what debounces a flapping job: it must fail for the whole grace period.
	FailingSince time.Time
	// Failing names the failing processes, for messages.
	Failing []string
	// LastError is the agent's last error, for messages.
	LastError string
	// Refused is set when the last attempt was refused outright (TCP reset,
	// host unreachable): nothing listens where the agent should, which is
	// a definite answer, unlike a timeout (a slow network, a busy VM).
	Refused bool
}

// Policy holds the thresholds.
type Policy struct {
	AgentTimeout time.Duration // default 30 s
	FailingGrace time.Duration // default 30 s
	Interval     time.Duration // observation interval, default 10 s
	// RefusedTimeout replaces AgentTimeout while the agent's address refuses
	// connections (default 10 s; never more than AgentTimeout).
	RefusedTimeout time.Duration
}

// Defaults fills zero fields.
func (p Policy) Defaults() Policy {
	if p.AgentTimeout <= 0 {
		p.AgentTimeout = 30 * time.Second
	}
	if p.FailingGrace <= 0 {
		p.FailingGrace = 30 * time.Second
	}
	if p.Interval <= 0 {
		p.Interval = 10 * time.Second
	}
	if p.RefusedTimeout <= 0 {
		p.RefusedTimeout = 10 * time.Second
	}
	if p.RefusedTimeout > p.AgentTimeout {
		p.RefusedTimeout = p.AgentTimeout
	}
	return p
}

// Verdict is one instance's evaluation.
type Verdict struct {
	Target  Target
	Reasons []Reason
	// Details say what was seen, one per reason.
	Details []string
	// Suspect is set on a healthy instance that is on its way to unhealthy
	// (its agent is late, or a job fails within the grace period).
	Suspect bool
}

// Healthy reports whether no reason was found.
func (v Verdict) Healthy() bool { return len(v.Reasons) == 0 }

// Has reports whether r is among the reasons.
func (v Verdict) Has(r Reason) bool {
	for _, x := range v.Reasons {
		if x == r {
			return true
		}
	}
	return false
}

// Evaluate splits targets into healthy and unhealthy at now, and says how
// long until something can change (the next check): never more than the
// policy's interval. Targets without an observation count from now.
func (p Policy) Evaluate(now time.Time, targets []Target, obs map[string]Observation) (healthy, unhealthy []Verdict, next time.Duration) {
	p = p.Defaults()
	next = p.Interval
	soon := func(at time.Time) {
		if d := at.Sub(now); d > 0 && d < next {
			next = d
		}
	}
	for _, t := range targets {
		v := Verdict{Target: t}
		o, seen := obs[t.UUID]
		if !seen {
			o.WatchedSince = now
		}
		if t.HasVM && !t.Ignore {
			switch {
			case o.VMGone:
				v.Reasons = append(v.Reasons, ReasonMissingVM)
				v.Details = append(v.Details, "the CPI says the VM is gone")
			default:
				since := o.LastAnswer
				if since.IsZero() {
					since = o.WatchedSince
				}
				timeout := p.AgentTimeout
				if o.Refused {
					timeout = p.RefusedTimeout
				}
				deadline := since.Add(timeout)
				if !now.Before(deadline) {
					v.Reasons = append(v.Reasons, ReasonUnresponsive)
					d := fmt.Sprintf("agent has not answered for %s", now.Sub(since).Round(time.Second))
					if o.Refused {
						d = fmt.Sprintf("agent's address has refused connections for %s", now.Sub(since).Round(time.Second))
					}
					if o.LastError != "" {
						d += ": " + o.LastError
					}
					v.Details = append(v.Details, d)
				} else if o.LastError != "" {
					v.Suspect = true
					soon(deadline)
				}
			}
			if !t.Stopped && !v.Has(ReasonMissingVM) && !v.Has(ReasonUnresponsive) && !o.FailingSince.IsZero() {
				deadline := o.FailingSince.Add(p.FailingGrace)
				if !now.Before(deadline) {
					v.Reasons = append(v.Reasons, ReasonFailingJob)
					d := fmt.Sprintf("job state failing for %s", now.Sub(o.FailingSince).Round(time.Second))
					if len(o.Failing) > 0 {
						d += fmt.Sprintf(" (%v)", o.Failing)
					}
					v.Details = append(v.Details, d)
				} else {
					v.Suspect = true
					soon(deadline)
				}
			}
		}
		if v.Healthy() {
			healthy = append(healthy, v)
		} else {
			unhealthy = append(unhealthy, v)
		}
	}
	sortVerdicts(healthy)
	sortVerdicts(unhealthy)
	return healthy, unhealthy, next
}

func sortVerdicts(vs []Verdict) {
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := vs[i].Target, vs[j].Target
		if a.Deployment != b.Deployment {
			return a.Deployment < b.Deployment
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Index < b.Index
	})
}

// Observe folds one get_state answer (or failure) into an observation.
// jobState is "" when the agent did not answer (errMsg says why).
func Observe(now time.Time, o Observation, jobState string, failing []string, errMsg string) Observation {
	if o.WatchedSince.IsZero() {
		o.WatchedSince = now
	}
	if jobState == "" {
		o.LastError = errMsg
		return o
	}
	o.LastAnswer, o.LastError, o.VMGone, o.Refused = now, "", false, false
	o.JobState, o.Failing = jobState, failing
	// Anything but running counts: a process crashing in a loop spends
	// most of its time "starting" (restart backoff), not "failing".
	if jobState != "running" {
		if o.FailingSince.IsZero() {
			o.FailingSince = now
		}
	} else {
		o.FailingSince = time.Time{}
	}
	return o
}
