package state_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/kpaas/kpaas/pkg/state"
)

// How the deploy engine is meant to use the store: take the deployment's
// lock, record each CPI mutation the moment it returns, group rows that
// belong together in one transaction, and load the whole state in one call.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "kpaas-example")
	defer os.RemoveAll(dir)
	s, err := state.Open(ctx, dir, state.Options{User: "ops", Host: "laptop"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	lock, err := s.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy"})
	if err != nil {
		fmt.Println(err) // a *state.LockError naming the holder; exit code 3
		return
	}
	defer lock.Release(ctx)

	_, _ = s.CreateDeployment(ctx, "cf")
	// An instance and its IP belong together: one transaction.
	err = s.Update(ctx, func(tx state.Tx) error {
		if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "api", Index: 0, UUID: "6f1c", AZ: "z1", Bootstrap: true}); err != nil {
			return err
		}
		return tx.ReserveIP(ctx, state.IPReservation{Network: "default", IP: "10.0.0.10", Deployment: "cf", Instance: "6f1c", Static: true})
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Right after create_vm returns, before talking to the agent.
	_ = s.SaveVM(ctx, state.VM{CID: "i-0abc", Deployment: "cf", Instance: "6f1c", AgentID: "agent-6f1c", IPs: []string{"10.0.0.10"}, Active: true})

	st, _ := s.LoadDeployment(ctx, "cf")
	for _, in := range st.Instances {
		vm := st.VMsByInstance()[in.UUID][0]
		fmt.Printf("%s (%s) vm %s ip %s\n", in.Name(), in.ID(), vm.CID, st.IPsByInstance()[in.UUID][0].IP)
	}

	// A second deploy of cf is refused at once.
	_, err = s.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("cf"), Op: "deploy"})
	var le *state.LockError
	fmt.Println(errors.As(err, &le), le.Holder, le.Op)
	// Output:
	// api/0 (api/6f1c) vm i-0abc ip 10.0.0.10
	// true ops@laptop deploy
}
