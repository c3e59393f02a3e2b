package agentclient

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// DefaultTimeouts bound a call whose context has no deadline, so no agent
// call can hang a deploy: BOSH's 45 s for quick methods, and more than the
// agent's own script timeouts for those that run scripts.
var DefaultTimeouts = map[string]time.Duration{
	protocol.MethodApply:          30 * time.Minute,
	protocol.MethodPrepare:        30 * time.Minute,
	protocol.MethodStop:           20 * time.Minute,
	protocol.MethodDrain:          20 * time.Minute,
	protocol.MethodRunScript:      15 * time.Minute,
	protocol.MethodRunErrand:      65 * time.Minute,
	protocol.MethodCompilePackage: 65 * time.Minute,
	protocol.MethodMountDisk:      30 * time.Minute, // formatting, migrating data
	protocol.MethodUnmountDisk:    5 * time.Minute,
	protocol.MethodFetchLogs:      30 * time.Minute,
	protocol.MethodShutdown:       20 * time.Minute,
}

// defaultTimeout is the timeout of method when the caller set none; 0 = none
// (tail_logs follows until cancelled, blobs stream as long as they flow).
func defaultTimeout(method string) time.Duration {
	if method == protocol.MethodTailLogs {
		return 0
	}
	if d, ok := DefaultTimeouts[method]; ok {
		return d
	}
	return 45 * time.Second
}

func withDefaultTimeout(ctx context.Context, method string) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	if d := defaultTimeout(method); d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return ctx, func() {}
}

// StartJobs runs BOSH's start sequence on the instance: run_script
// pre-start, start, wait until job_state is running, run_script post-start.
// A job still not running after wait fails with what its processes report.
func (c *Client) StartJobs(ctx context.Context, wait time.Duration) (*protocol.State, error) {
	if _, err := c.RunScript(ctx, "pre-start", nil); err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	st, err := c.WaitRunning(ctx, wait)
	if err != nil {
		return st, err
	}
	if _, err := c.RunScript(ctx, "post-start", nil); err != nil {
		return st, err
	}
	return st, nil
}

// WaitRunning polls get_state until job_state is running or wait elapses.
func (c *Client) WaitRunning(ctx context.Context, wait time.Duration) (*protocol.State, error) {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.GetState(ctx, false)
		if err != nil {
			return nil, err
		}
		if st.JobState == protocol.JobRunning {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s: jobs are %s after %s: %s", c.t.Name, st.JobState, wait, describeProcesses(st.Processes))
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

func describeProcesses(ps []protocol.Process) string {
	var parts []string
	for _, p := range ps {
		if p.State == protocol.JobRunning {
			continue
		}
		s := fmt.Sprintf("%s/%s is %s", p.Job, p.Name, p.State)
		if p.Error != "" {
			s += " (" + p.Error + ")"
		}
		s += fmt.Sprintf(", logs in /var/vcap/sys/log/%s/", p.Job)
		parts = append(parts, s)
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no process reports a problem"
	}
	return strings.Join(parts, "; ")
}

// StopOptions describe why an instance stops (BOSH's pre-stop next states
// and drain type).
type StopOptions struct {
	SkipDrain           bool
	DrainType           string              // update (default when NewSpec is set) or shutdown
	NewSpec             *protocol.ApplySpec // for update drains
	VMNextState         string              // keep or delete (BOSH_VM_NEXT_STATE)
	InstanceNextState   string              // BOSH_INSTANCE_NEXT_STATE
	DeploymentNextState string              // BOSH_DEPLOYMENT_NEXT_STATE
}

// StopJobs runs BOSH's stop sequence: run_script pre-stop (with the next
// states), drain, stop, run_script post-stop.
func (c *Client) StopJobs(ctx context.Context, o StopOptions) error {
	env := map[string]string{
		"BOSH_VM_NEXT_STATE":         orDefault(o.VMNextState, "keep"),
		"BOSH_INSTANCE_NEXT_STATE":   orDefault(o.InstanceNextState, "keep"),
		"BOSH_DEPLOYMENT_NEXT_STATE": orDefault(o.DeploymentNextState, "keep"),
	}
	if _, err := c.RunScript(ctx, "pre-stop", env); err != nil {
		return err
	}
	if !o.SkipDrain {
		typ := o.DrainType
		if typ == "" {
			typ = protocol.DrainShutdown
			if o.NewSpec != nil {
				typ = protocol.DrainUpdate
			}
		}
		if _, err := c.Drain(ctx, protocol.DrainRequest{Type: typ, Spec: o.NewSpec}); err != nil {
			return err
		}
	}
	if err := c.Stop(ctx); err != nil {
		return err
	}
	_, err := c.RunScript(ctx, "post-stop", nil)
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
