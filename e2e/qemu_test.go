package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/qemu"
)

// qemuRelease is a release whose one job needs nothing but /bin/sh (the
// Debian stemcell has no busybox httpd): it writes the time into the
// persistent disk every second.
var qemuRelease = map[string]string{
	"config/final.yml": "---\nname: kpaas-qemu-test\nblobstore:\n  provider: local\n  options:\n    blobstore_path: /tmp/kpaas-qemu-test-blobs\n",
	"jobs/ticker/spec": "---\nname: ticker\ntemplates:\n  bpm.yml: config/bpm.yml\n  pre-start.sh: bin/pre-start\npackages: []\nproperties:\n  ticker.word:\n    default: tick\n",
	"jobs/ticker/monit": "check process ticker\n  with pidfile /var/vcap/sys/run/bpm/ticker/ticker.pid\n" +
		"  start program \"/var/vcap/jobs/bpm/bin/bpm start ticker\"\n  stop program \"/var/vcap/jobs/bpm/bin/bpm stop ticker\"\n  group vcap\n",
	"jobs/ticker/templates/pre-start.sh": "#!/bin/sh\nset -e\nmkdir -p /var/vcap/store/ticker\nchown vcap:vcap /var/vcap/store/ticker\n",
	"jobs/ticker/templates/bpm.yml": "processes:\n- name: ticker\n  executable: /bin/sh\n  args:\n  - -c\n" +
		"  - while true; do echo {{ p \"ticker.word\" }} > /var/vcap/store/ticker/word; sleep 1; done\n  persistent_disk: true\n",
}

// TestDeployOnQEMU deploys two instances with persistent disks onto real VMs
// under QEMU (cpi/qemu through `kpaas cpi`-style drivers in a cpi-config),
// checks each one's job writes into its hot-plugged disk, then deletes the
// deployment and checks nothing is left. It needs the qcow2 stemcell that
// .ci/setup-qemu.sh caches.
func TestDeployOnQEMU(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	require.NoError(t, buildErr)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (.ci/setup-qemu.sh)")
	}
	stemcell := os.Getenv("KPAAS_QCOW2_STEMCELL")
	if stemcell == "" {
		stemcell = "/var/cache/kpaas/qcow2-stemcell.tgz"
	}
	if _, err := os.Stat(stemcell); err != nil {
		t.Skipf("no qcow2 stemcell at %s (.ci/setup-qemu.sh builds it)", stemcell)
	}
	e := &env{t: t, state: t.TempDir(), work: t.TempDir(), subnet: "10.245.20"}
	t.Cleanup(func() { e.kpaas("delete-deployment", "-d", "ticker", "--force", "-n") })
	qdir := filepath.Join(e.state, "qemu-cloud")
	e.write("cpi.yml", fmt.Sprintf("cpis:\n- name: qemu\n  type: qemu\n  properties: {dir: %s, ram: 256, accel: tcg}\n", qdir))
	e.must("update-cpi-config", "cpi.yml", "-n")
	q, err := qemu.New(qemu.Config{Dir: qdir, Accel: "tcg"}, nil)
	require.NoError(t, err)
	before, err := q.Inventory()
	require.NoError(t, err)

	rel := filepath.Join(e.work, "release")
	for p, c := range qemuRelease {
		require.NoError(t, os.MkdirAll(filepath.Join(rel, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(rel, p), []byte(c), 0o644))
	}
	e.must("upload-stemcell", stemcell)
	e.must("upload-release", rel)
	e.write("cloud.yml", `
azs: [{name: z1}]
vm_types: [{name: small, cloud_properties: {ram: 256, cpu: 1}}]
disk_types: [{name: d1, disk_size: 64}]
networks:
- name: net
  subnets:
  - range: 10.245.20.0/24
    gateway: 10.245.20.1
    reserved: [10.245.20.2-10.245.20.9]
    azs: [z1]
compilation: {workers: 1, az: z1, network: net, vm_type: small}
`)
	e.must("update-cloud-config", "cloud.yml", "-n")
	m := e.write("ticker.yml", `name: ticker
releases: [{name: kpaas-qemu-test, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000-120000, update_watch_time: 1000-120000}
instance_groups:
- name: ticker
  azs: [z1]
  instances: 2
  vm_type: small
  persistent_disk_type: d1
  stemcell: default
  networks: [{name: net}]
  jobs:
  - name: ticker
    release: kpaas-qemu-test
    properties: {ticker: {word: tock}}
`)
	start := time.Now()
	e.must("deploy", m, "-n")
	t.Logf("2-VM deploy on QEMU: %s", time.Since(start).Round(time.Second))
	r := e.must("ssh", "-d", "ticker", "ticker", "-c", "sleep 2; cat /var/vcap/store/ticker/word && grep -c ' /var/vcap/store ' /proc/mounts")
	assert.Equal(t, 2, strings.Count(r.stdout, ": tock\n"), "each instance's job writes into its persistent disk:\n%s", r.stdout)
	assert.Equal(t, 2, strings.Count(r.stdout, ": 1\n"), "each instance has its persistent disk mounted:\n%s", r.stdout)
	var vms []string
	inv, err := q.Inventory()
	require.NoError(t, err)
	for _, i := range inv {
		if strings.HasPrefix(i, "vms/") {
			vms = append(vms, i)
		}
	}
	assert.Len(t, vms, 2)

	e.must("delete-deployment", "-d", "ticker", "-n")
	r = e.must("stemcells", "--json")
	var scs []struct{ Name, Version string }
	_ = json.Unmarshal([]byte(r.stdout), &scs)
	for _, s := range scs {
		e.must("delete-stemcell", s.Name+"/"+s.Version, "--force")
	}
	// delete-deployment orphans the persistent disks (as BOSH does); the
	// driver deletes them, then nothing of the deployment is left.
	inv, err = q.Inventory()
	require.NoError(t, err)
	var orphans int
	for _, i := range inv {
		if strings.HasPrefix(i, "disks/") && strings.HasSuffix(i, ".json") {
			orphans++
			require.NoError(t, q.DeleteDisk(context.Background(), cpi.DiskCID(strings.TrimSuffix(strings.TrimPrefix(i, "disks/"), ".json"))))
		}
	}
	assert.Equal(t, 2, orphans, "the two persistent disks are orphaned, not deleted")
	after, err := q.Inventory()
	require.NoError(t, err)
	assert.Equal(t, before, after, "nothing left in the QEMU cloud or on the host")
}
