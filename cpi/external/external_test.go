package external_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/cpitest"
	"github.com/kpaas/kpaas/cpi/external"
	"github.com/kpaas/kpaas/cpi/rpc"
)

// TestMain lets this test binary act as a CPI executable (one process per
// call) serving a file-backed fake, so the exec path is tested for real.
func TestMain(m *testing.M) {
	if path := os.Getenv("KPAAS_TEST_FAKE_CPI_STATE"); path != "" {
		f, err := cpitest.NewFakeFile(path)
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Stderr.WriteString("fake cpi: serving one call\n")
		_ = rpc.Serve(context.Background(), func(rpc.CallContext) (cpi.CPI, error) { return f, nil }, os.Stdin, os.Stdout)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// inProcess serves drv through the wire protocol without a process and records requests.
type inProcess struct {
	mu   sync.Mutex
	reqs []rpc.Request
	drv  cpi.CPI
}

func (p *inProcess) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	b, _ := io.ReadAll(stdin)
	var req rpc.Request
	_ = json.Unmarshal(b, &req)
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	_, _ = io.WriteString(stderr, "serving "+req.Method+"\n")
	return rpc.Serve(ctx, func(rpc.CallContext) (cpi.CPI, error) { return p.drv, nil }, bytes.NewReader(b), stdout)
}

// v1Fake is a fake that says api_version 1 (a pre-v2 BOSH CPI).
type v1Fake struct{ *cpitest.Fake }

func (v v1Fake) Info(ctx context.Context) (cpi.Info, error) {
	i, err := v.Fake.Info(ctx)
	i.APIVersion = 1
	return i, err
}

func TestConformanceThroughTheWireV2(t *testing.T) {
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		f := cpitest.NewFake()
		p := &inProcess{drv: f}
		return cpitest.Target{CPI: external.New(external.Config{Run: p.run}), Inventory: f.Inventory, Settings: f.Settings}
	})
}

func TestConformanceThroughTheWireV1(t *testing.T) {
	f := cpitest.NewFake()
	p := &inProcess{drv: v1Fake{f}}
	c := external.New(external.Config{Run: p.run})
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		return cpitest.Target{CPI: c, Inventory: f.Inventory, Settings: f.Settings}
	})
	for _, r := range p.reqs[1:] {
		assert.Equal(t, 1, r.APIVersion, "%s is sent at the negotiated api_version", r.Method)
	}
}

func TestConformanceThroughAProcessPerCall(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fake.json")
	cpitest.Conformance(t, func(t *testing.T) cpitest.Target {
		c := external.New(external.Config{Command: os.Args[0], Env: []string{"KPAAS_TEST_FAKE_CPI_STATE=" + state}, Timeout: 30 * time.Second})
		inv := func() ([]string, error) {
			f, err := cpitest.NewFakeFile(state)
			if err != nil {
				return nil, err
			}
			return f.Inventory()
		}
		return cpitest.Target{CPI: c, Inventory: inv}
	})
}

func TestV1ResultsAndV2Results(t *testing.T) {
	ctx := context.Background()
	for _, v := range []int{1, 2} {
		f := cpitest.NewFake()
		var drv cpi.CPI = f
		if v == 1 {
			drv = v1Fake{f}
		}
		p := &inProcess{drv: drv}
		c := external.New(external.Config{Run: p.run})
		st, err := c.CreateStemcell(ctx, "/dev/null", nil)
		require.NoError(t, err)
		vm, nets, err := c.CreateVM(ctx, "a", st, nil, cpi.Networks{"n": {Type: "dynamic"}}, nil, nil)
		require.NoError(t, err)
		d, err := c.CreateDisk(ctx, 10, nil, vm)
		require.NoError(t, err)
		hint, err := c.AttachDisk(ctx, vm, d)
		require.NoError(t, err)
		fv, _ := f.VM(vm)
		if v == 2 {
			assert.Equal(t, fv.Networks["n"].IP, nets["n"].IP, "v2 create_vm returns the assigned networks")
			assert.Equal(t, cpi.DiskHint{Path: "/dev/fake/" + string(d)}, hint)
		} else {
			assert.Empty(t, nets["n"].IP, "v1 create_vm returns only a CID; the requested networks are given back")
			assert.True(t, hint.IsZero(), "v1 attach_disk returns null")
		}
		assert.Equal(t, "info", p.reqs[0].Method)
		assert.Equal(t, v, p.reqs[1].APIVersion)
		assert.Contains(t, p.reqs[1].Context, "request_id")
		assert.Contains(t, p.reqs[1].Context, "director_uuid")
	}
}

func TestErrorsKeepTheirBOSHTypeAndRetry(t *testing.T) {
	ctx := context.Background()
	f := cpitest.NewFake()
	c := external.New(external.Config{Run: (&inProcess{drv: f}).run})
	f.FailNext("create_vm", cpi.VMCreationFailed(true, errors.New("no capacity")))
	_, _, err := c.CreateVM(ctx, "a", "s", nil, nil, nil, nil)
	require.ErrorIs(t, err, cpi.ErrVMCreationFailed)
	assert.True(t, cpi.Retryable(err))
	assert.Contains(t, err.Error(), "no capacity")

	f.FailNext("delete_vm", errors.New("plain go error"))
	err = c.DeleteVM(ctx, "x")
	require.ErrorIs(t, err, cpi.ErrCloudError, "an untyped error is a CloudError on the wire")
	assert.False(t, cpi.Retryable(err))
}

func TestUnknownMethodAndBadRequest(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, rpc.Serve(context.Background(), func(rpc.CallContext) (cpi.CPI, error) { return cpitest.NewFake(), nil },
		bytes.NewBufferString(`{"method":"calculate_vm_cloud_properties","arguments":[{}],"context":{}}`), &out))
	assert.Contains(t, out.String(), `"type":"Bosh::Clouds::NotImplemented"`)
	out.Reset()
	require.NoError(t, rpc.Serve(context.Background(), func(rpc.CallContext) (cpi.CPI, error) { return cpitest.NewFake(), nil },
		bytes.NewBufferString(`{"method":`), &out))
	assert.Contains(t, out.String(), `"type":"Bosh::Clouds::CpiError"`)
	out.Reset()
	require.NoError(t, rpc.Serve(context.Background(), func(rpc.CallContext) (cpi.CPI, error) { return cpitest.NewFake(), nil },
		bytes.NewBufferString(`{"method":"create_vm","arguments":[],"context":{},"api_version":2}`), &out))
	assert.Contains(t, out.String(), `create_vm: argument 1 is missing`)
}

func TestTimeoutKillsTheCallAndIsRetryable(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "cpi")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755))
	c := external.New(external.Config{Command: script, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Info(context.Background())
	require.Error(t, err)
	assert.Less(t, time.Since(start), 6*time.Second)
	assert.True(t, cpi.Retryable(err))
	assert.Contains(t, err.Error(), "timed out after 200ms")
}

func TestLogAndStderrGoToTheDebugLogger(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "cpi")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
cat >/dev/null
echo "stderr line from cpi" >&2
echo '{"result":{"api_version":1,"stemcell_formats":["openstack-qcow2"]},"error":null,"log":"log line from cpi"}'
exit 3
`), 0o755))
	var logs bytes.Buffer
	c := external.New(external.Config{Command: script, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	info, err := c.Info(context.Background())
	require.NoError(t, err, "the exit code is ignored")
	assert.Equal(t, 1, info.APIVersion)
	assert.True(t, info.Has(cpi.CapSnapshots), "a BOSH CPI that declares nothing is assumed to have everything")
	assert.Contains(t, logs.String(), "stderr line from cpi")
	assert.Contains(t, logs.String(), "log line from cpi")
}

func TestGarbageResponseSaysWhatCameBack(t *testing.T) {
	script := filepath.Join(t.TempDir(), "cpi")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho not json\n"), 0o755))
	_, err := external.New(external.Config{Command: script}).Info(context.Background())
	require.ErrorIs(t, err, cpi.ErrCpiError)
	assert.Contains(t, err.Error(), "not json")
}

func TestSecretsAreNotLogged(t *testing.T) {
	var logs bytes.Buffer
	f := cpitest.NewFake()
	c := external.New(external.Config{Run: (&inProcess{drv: f}).run, Properties: map[string]any{"openstack": map[string]any{"api_key": "os-secret"}},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	st, err := c.CreateStemcell(context.Background(), "/dev/null", nil)
	require.NoError(t, err)
	_, _, err = c.CreateVM(context.Background(), "a", st, nil, nil, nil, cpi.Env{
		"bosh": map[string]any{"password": "$6$hash"}, "kpaas": map[string]any{"host_key": "-----BEGIN PRIVATE KEY-----"}})
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "create_vm")
	for _, secret := range []string{"os-secret", "$6$hash", "BEGIN PRIVATE KEY"} {
		assert.NotContains(t, logs.String(), secret)
	}
	fv, _ := f.VM(f.VMs()[0])
	assert.Equal(t, "-----BEGIN PRIVATE KEY-----", fv.Settings.Env.Kpaas.HostKey, "the CPI itself gets the secret")
}

func TestParallelProcessesShareTheFileFake(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fake.json")
	c := external.New(external.Config{Command: os.Args[0], Env: []string{"KPAAS_TEST_FAKE_CPI_STATE=" + state}, Timeout: 30 * time.Second})
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = c.CreateDisk(context.Background(), 1, nil, "") }()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	f, err := cpitest.NewFakeFile(state)
	require.NoError(t, err)
	inv, err := f.Inventory()
	require.NoError(t, err)
	assert.Len(t, inv, n, "no call lost another's update")
}
