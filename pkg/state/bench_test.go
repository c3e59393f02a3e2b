package state_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// Targets (issue 3): load a 10,000-instance deployment < 200 ms on SQLite,
// record an instance change < 2 ms, append 10,000 events < 1 s.

// eachBackendB runs body on each backend; setup runs once per backend (not
// once per b.N round), on a store that lives for the whole benchmark.
func eachBackendB(b *testing.B, setup func(b testing.TB, s state.Store), body func(b *testing.B, s state.Store)) {
	for _, be := range statetest.Backends() {
		var s state.Store
		parent := b
		b.Run(be.Name, func(b *testing.B) {
			if u, why := statetest.PostgresURL(); be.Name == "postgres" && u == "" {
				b.Skip(why)
			}
			if s == nil {
				s = newStore(parent, be) // closed when the whole benchmark ends
				setup(b, s)
			}
			body(b, s)
		})
	}
}

func noSetup(testing.TB, state.Store) {}

func bigDeployment(n int) func(b testing.TB, s state.Store) {
	return func(b testing.TB, s state.Store) { sampleDeployment(b, s, "big", n) }
}

func BenchmarkLoadDeployment10k(b *testing.B) {
	eachBackendB(b, bigDeployment(10000), func(b *testing.B, s state.Store) {
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			st, err := s.LoadDeployment(ctx, "big")
			if err != nil {
				b.Fatal(err)
			}
			if len(st.Instances) != 10000 || len(st.VMs) != 10000 || len(st.Disks) != 10000 || len(st.IPs) != 10000 {
				b.Fatalf("loaded %d instances", len(st.Instances))
			}
		}
	})
}

func BenchmarkRecordInstanceChange(b *testing.B) {
	eachBackendB(b, bigDeployment(10000), func(b *testing.B, s state.Store) {
		ctx := context.Background()
		states := []state.InstanceState{state.Stopped, state.Started}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			uuid := fmt.Sprintf("big-uuid-%05d", i%10000)
			if err := s.SetInstanceState(ctx, "big", uuid, states[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSaveVM(b *testing.B) {
	eachBackendB(b, bigDeployment(100), func(b *testing.B, s state.Store) {
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.SaveVM(ctx, state.VM{CID: fmt.Sprintf("new-vm-%d", i%1000), Deployment: "big", Instance: "big-uuid-00001", AgentID: "a", IPs: []string{"10.0.0.9"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendEvents10k(b *testing.B) {
	eachBackendB(b, noSetup, func(b *testing.B, s state.Store) {
		ctx := context.Background()
		evs := make([]state.Event, 10000)
		for i := range evs {
			evs[i] = state.Event{Action: "update", ObjectType: "instance", ObjectName: fmt.Sprintf("web/%d", i), Deployment: "big", Instance: fmt.Sprintf("web/u%d", i), TaskID: 1}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.AppendEvents(ctx, evs...); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendOneEvent(b *testing.B) {
	eachBackendB(b, noSetup, func(b *testing.B, s state.Store) {
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.AppendEvents(ctx, state.Event{Action: "update", ObjectType: "instance", ObjectName: "web/0", Deployment: "big"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
