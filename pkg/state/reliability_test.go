package state_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

// The reliability tests run real subprocesses: the test binary re-executed
// with KPAAS_STATE_CHILD set runs one of the children below instead of tests.
const childEnv = "KPAAS_STATE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode, os.Getenv("KPAAS_STATE_LOC")))
	}
	os.Exit(m.Run())
}

const batchSize = 50

func runChild(mode, loc string) int {
	ctx := context.Background()
	s, err := state.Open(ctx, loc, state.Options{Key: statetest.Key, User: "child" + strconv.Itoa(os.Getpid()), Host: "test"})
	if err != nil {
		fmt.Println("OPEN-ERROR", err)
		return 1
	}
	defer s.Close()
	switch mode {
	case "stall-mid-tx":
		// Write half a batch, say so, then wait to be killed inside the transaction.
		_ = s.Update(ctx, func(tx state.Tx) error {
			for i := 0; i < batchSize; i++ {
				if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "b0", Index: i, UUID: fmt.Sprintf("b0-%d", i)}); err != nil {
					fmt.Println("ERROR", err)
					return err
				}
				if i == batchSize/2 {
					fmt.Println("MID")
				}
			}
			time.Sleep(time.Hour)
			return nil
		})
		return 1
	case "write-batches":
		// Commit batches of instances (plus VMs and an event) until killed.
		for k := 0; ; k++ {
			err := s.Update(ctx, func(tx state.Tx) error {
				for i := 0; i < batchSize; i++ {
					uuid := fmt.Sprintf("b%d-%d", k, i)
					if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: fmt.Sprintf("b%d", k), Index: i, UUID: uuid}); err != nil {
						return err
					}
					if err := tx.SaveVM(ctx, state.VM{CID: "vm-" + uuid, Deployment: "cf", Instance: uuid}); err != nil {
						return err
					}
				}
				_, err := tx.AppendEvents(ctx, state.Event{Action: "create", ObjectType: "batch", ObjectName: fmt.Sprintf("b%d", k), Deployment: "cf"})
				return err
			})
			if err != nil {
				fmt.Println("ERROR", err)
				return 1
			}
			fmt.Println("COMMITTED", k)
		}
	case "write-many":
		// Many small writes, as a deploy records each step while `kpaas monitor` runs beside it.
		me := strconv.Itoa(os.Getpid())
		for i := 0; i < 150; i++ {
			uuid := me + "-" + strconv.Itoa(i)
			if err := s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "p" + me, Index: i, UUID: uuid}); err != nil {
				fmt.Println("ERROR", err)
				return 1
			}
			if err := s.SaveVM(ctx, state.VM{CID: "vm-" + uuid, Deployment: "cf", Instance: uuid}); err != nil {
				fmt.Println("ERROR", err)
				return 1
			}
			if _, err := s.AppendEvents(ctx, state.Event{Action: "create", ObjectType: "vm", ObjectName: "vm-" + uuid, Deployment: "cf"}); err != nil {
				fmt.Println("ERROR", err)
				return 1
			}
		}
		fmt.Println("DONE")
		return 0
	case "lock":
		// Wait for "go" on stdin, race for the lock, report, hold it until stdin closes.
		r := bufio.NewReader(os.Stdin)
		if line, _ := r.ReadString('\n'); strings.TrimSpace(line) != "go" {
			return 1
		}
		l, err := s.Lock(ctx, state.LockRequest{Name: state.DeploymentLock("race"), Op: "deploy"})
		var le *state.LockError
		if errors.As(err, &le) {
			fmt.Printf("LOST holder=%s pid=%d op=%s\n", le.Holder, le.PID, le.Op)
			return le.ExitCode()
		}
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		fmt.Println("WON")
		_, _ = io.Copy(io.Discard, r)
		if err := l.Release(ctx); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		return 0
	}
	return 2
}

func child(t *testing.T, mode, loc string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "KPAAS_STATE_LOC="+loc)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout), stdin
}

func killHard(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}

func TestKilledWriterMidTransactionLeavesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		s := statetest.Open(t, loc)
		_, err := s.CreateDeployment(ctx, "cf")
		require.NoError(t, err)

		cmd, out, _ := child(t, "stall-mid-tx", loc)
		require.True(t, out.Scan(), "child said nothing")
		require.Equal(t, "MID", out.Text())
		killHard(t, cmd)

		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Empty(t, st.Instances, "half a transaction must not survive its writer")
		// The store takes writes again at once (no lock left behind by the dead writer).
		require.NoError(t, s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "after", UUID: "after-0"}))
	})
}

func TestKilledWriterKeepsEveryCommittedBatchWhole(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		s := statetest.Open(t, loc)
		_, err := s.CreateDeployment(ctx, "cf")
		require.NoError(t, err)

		for round, after := range []int{3, 7} {
			before, err := s.Events(ctx, state.EventFilter{})
			require.NoError(t, err)
			cmd, out, _ := child(t, "write-batches", loc)
			committed := -1
			for out.Scan() {
				var k int
				if _, err := fmt.Sscanf(out.Text(), "COMMITTED %d", &k); err != nil {
					t.Fatalf("child: %s", out.Text())
				}
				committed = k
				if k == after {
					break // kill while the next batch is being written
				}
			}
			killHard(t, cmd)
			require.Equal(t, after, committed, "round %d", round)

			st, err := s.LoadDeployment(ctx, "cf")
			require.NoError(t, err)
			perGroup := map[string]int{}
			for _, i := range st.Instances {
				perGroup[i.Group]++
			}
			vms := map[string]bool{}
			for _, vm := range st.VMs {
				vms[vm.Instance] = true
			}
			for g, n := range perGroup {
				assert.Equal(t, batchSize, n, "batch %s is whole or absent", g)
			}
			for _, i := range st.Instances {
				assert.True(t, vms[i.UUID], "instance %s has its vm", i.UUID)
			}
			for k := 0; k <= committed; k++ {
				assert.Equal(t, batchSize, perGroup[fmt.Sprintf("b%d", k)], "committed batch b%d is there", k)
			}
			evs, err := s.Events(ctx, state.EventFilter{Deployment: "cf"})
			require.NoError(t, err)
			assert.Equal(t, len(perGroup), len(evs)-len(before), "one event per whole batch")
			// Next round starts from a clean deployment.
			require.NoError(t, s.DeleteDeployment(ctx, "cf"))
			_, err = s.CreateDeployment(ctx, "cf")
			require.NoError(t, err)
		}
	})
}

func TestTwoProcessesWriteAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		loc := b.NewLocation(t)
		s := statetest.Open(t, loc)
		_, err := s.CreateDeployment(ctx, "cf")
		require.NoError(t, err)
		type proc struct {
			cmd *exec.Cmd
			out *bufio.Scanner
		}
		var ps []proc
		for i := 0; i < 2; i++ {
			cmd, out, _ := child(t, "write-many", loc)
			ps = append(ps, proc{cmd, out})
		}
		// Read while they write: every snapshot is consistent (each VM's instance is there).
		for i := 0; i < 20; i++ {
			st, err := s.LoadDeployment(ctx, "cf")
			require.NoError(t, err)
			has := map[string]bool{}
			for _, in := range st.Instances {
				has[in.UUID] = true
			}
			for _, vm := range st.VMs {
				assert.True(t, has[vm.Instance], "vm %s without its instance", vm.CID)
			}
		}
		for i, p := range ps {
			require.True(t, p.out.Scan(), "writer %d said nothing", i)
			assert.Equal(t, "DONE", p.out.Text(), "writer %d", i)
			require.NoError(t, p.cmd.Wait())
		}
		st, err := s.LoadDeployment(ctx, "cf")
		require.NoError(t, err)
		assert.Len(t, st.Instances, 300)
		assert.Len(t, st.VMs, 300)
		evs, err := s.Events(ctx, state.EventFilter{Deployment: "cf"})
		require.NoError(t, err)
		assert.Len(t, evs, 300)
	})
}

func TestTwoProcessesRaceForOneLock(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		loc := b.NewLocation(t)
		statetest.Open(t, loc) // create the schema before the race
		type racer struct {
			cmd   *exec.Cmd
			out   *bufio.Scanner
			stdin io.WriteCloser
		}
		var rs []racer
		for i := 0; i < 2; i++ {
			cmd, out, in := child(t, "lock", loc)
			rs = append(rs, racer{cmd, out, in})
		}
		for _, r := range rs {
			_, err := io.WriteString(r.stdin, "go\n")
			require.NoError(t, err)
		}
		var won []int
		var lost []string
		for i, r := range rs {
			require.True(t, r.out.Scan(), "racer %d said nothing", i)
			switch line := r.out.Text(); {
			case line == "WON":
				won = append(won, i)
			case strings.HasPrefix(line, "LOST "):
				lost = append(lost, line)
			default:
				t.Fatalf("racer %d: %s", i, line)
			}
		}
		require.Len(t, won, 1, "exactly one process wins")
		require.Len(t, lost, 1)
		winner := rs[won[0]].cmd.Process.Pid
		assert.Equal(t, fmt.Sprintf("LOST holder=child%d@test pid=%d op=deploy", winner, winner), lost[0])
		loser := rs[1-won[0]]
		err := loser.cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 3, ee.ExitCode(), "lock held is exit code 3")
		require.NoError(t, rs[won[0]].stdin.Close())
		require.NoError(t, rs[won[0]].cmd.Wait())
	})
}

func TestCorruptSQLiteFileIsAClearError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := state.OpenSQLite(ctx, dir, state.Options{Key: statetest.Key})
	require.NoError(t, err)
	sampleDeployment(t, s, "cf", 400)
	require.NoError(t, s.Close())
	db := filepath.Join(dir, state.DBFileName)
	good, err := os.ReadFile(db)
	require.NoError(t, err)
	require.Greater(t, len(good), 64*1024)

	cases := map[string][]byte{
		"garbage":   []byte(strings.Repeat("this is not a database ", 400)),
		"truncated": good[:len(good)/3],
		"zeroed":    append(append([]byte{}, good[:4096]...), make([]byte, len(good)-4096)...),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(db, content, 0o600))
			err := openAndLoad(ctx, dir)
			require.Error(t, err)
			t.Logf("the error a user sees: %v", err)
			assert.ErrorIs(t, err, state.ErrCorrupt)
			assert.Contains(t, err.Error(), "state store "+db+" is corrupted")
			assert.Contains(t, err.Error(), "restore it from a backup")

			// Once the file is restored, the next run works.
			require.NoError(t, os.WriteFile(db, good, 0o600))
			require.NoError(t, openAndLoad(ctx, dir))
		})
	}
}

func openAndLoad(ctx context.Context, dir string) error {
	s, err := state.OpenSQLite(ctx, dir, state.Options{Key: statetest.Key})
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.LoadDeployment(ctx, "cf")
	if err != nil {
		return err
	}
	if len(st.Instances) != 400 {
		return fmt.Errorf("loaded %d instances", len(st.Instances))
	}
	return nil
}

func TestPostgresConnectionLostMidOperation(t *testing.T) {
	ctx := context.Background()
	loc := statetest.Postgres.NewLocation(t)
	u, err := url.Parse(loc)
	require.NoError(t, err)
	q := u.Query()
	app := "kpaas-test-" + strconv.Itoa(os.Getpid())
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	s := statetest.Open(t, u.String())
	_, err = s.CreateDeployment(ctx, "cf")
	require.NoError(t, err)

	admin, err := sql.Open("pgx", loc)
	require.NoError(t, err)
	defer admin.Close()

	err = s.Update(ctx, func(tx state.Tx) error {
		if err := tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "g", Index: 0, UUID: "u0"}); err != nil {
			return err
		}
		// The server drops our connection in the middle of the transaction.
		if _, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
			return fmt.Errorf("terminating: %w", err)
		}
		return tx.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "g", Index: 1, UUID: "u1"})
	})
	require.Error(t, err)
	t.Logf("the error a user sees: %v", err)
	var ce *state.ConnError
	require.ErrorAs(t, err, &ce, "got %v", err)
	assert.Contains(t, err.Error(), "lost the connection to state store")
	assert.Contains(t, err.Error(), "nothing of this transaction was recorded")
	assert.NotContains(t, err.Error(), "kpaas_test:kpaas_test", "no password in messages")

	// The next operation works, and nothing of the broken transaction is there.
	require.NoError(t, s.SaveInstance(ctx, state.Instance{Deployment: "cf", Group: "g", Index: 2, UUID: "u2"}))
	st, err := s.LoadDeployment(ctx, "cf")
	require.NoError(t, err)
	require.Len(t, st.Instances, 1)
	assert.Equal(t, "u2", st.Instances[0].UUID)
}

func TestPostgresUnreachableIsAClearError(t *testing.T) {
	// A port on loopback where nothing listens.
	_, err := state.Open(context.Background(), "postgres://kpaas:secretpw@127.0.0.1:1/kpaas?connect_timeout=2", state.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "state store postgres://kpaas:xxxxx@127.0.0.1:1/kpaas")
	assert.NotContains(t, err.Error(), "secretpw")
}
