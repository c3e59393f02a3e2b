package vms

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kpaas/kpaas/pkg/cmdutil/cmdutiltest"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// BenchmarkVMsVitals is one `kpaas vms --vitals` over 10 real agents on
// loopback: open the store, load the deployment, dial and ask every agent.
func BenchmarkVMsVitals(b *testing.B) {
	dir := b.TempDir()
	s := cmdutiltest.Open(b, dir, nil)
	insts := make([]cmdutiltest.Instance, 10)
	for i := range insts {
		insts[i] = cmdutiltest.Instance{Group: "web", Index: i, UUID: fmt.Sprintf("u%d", i), AZ: "z1", VMType: "small"}
		cmdutiltest.StartAgent(b, agentBin, s, &insts[i])
	}
	cmdutiltest.Seed(b, s, "cf", "name: cf\n", insts)
	open := func(ctx context.Context) (state.Store, error) { return state.Open(ctx, dir, state.Options{}) }
	b.ResetTimer()
	for b.Loop() {
		ios, _, _, _ := ui.Test()
		if err := vmsRun(context.Background(), &Options{IO: ios, State: open, Now: time.Now, Deployment: "cf", Vitals: true, AgentTimeout: 5 * time.Second}); err != nil {
			b.Fatal(err)
		}
	}
}
