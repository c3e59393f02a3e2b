// Package vspheretest runs govmomi's vCenter simulator (vcsim, VPX model) in
// the test process with a vSphere driver configured for it, and reads back
// what the driver left there (VMs, datastore files, delivered settings). It is
// for tests of cpi/vsphere and of the layers that serve it.
package vspheretest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/pkg/agent/settings"
)

//go:embed image.ovf
var imageOVF []byte

// Sim is a vCenter simulator (govmomi's vcsim, VPX model) running in this
// process, and a driver configured for it.
type Sim struct {
	Model  *simulator.Model
	Server *simulator.Server
	Config vsphere.Config
	Driver *vsphere.Driver
	// DSDir is the local directory behind datastore LocalDS_0.
	DSDir string
}

// Option changes the model or the driver's config before the start.
type Option func(m *simulator.Model, c *vsphere.Config)

// Start starts the simulator (1 datacenter DC0, cluster DC0_C0 with 3
// hosts, datastore LocalDS_0, port groups "VM Network" and DC0_DVPG0).
func Start(t testing.TB, opts ...Option) *Sim {
	t.Helper()
	return start(t, false, opts)
}

// StartTLS is Start with the simulator serving HTTPS under its own
// self-signed certificate; the driver is given that certificate as
// connection_options.ca_cert.
func StartTLS(t testing.TB, opts ...Option) *Sim {
	t.Helper()
	return start(t, true, opts)
}

func start(t testing.TB, useTLS bool, opts []Option) *Sim {
	t.Helper()
	m := simulator.VPX()
	m.Machine = 0 // no sample VMs: the inventory is what the driver makes
	c := vsphere.Config{
		Datacenters: []vsphere.Datacenter{{
			Name: "DC0", Clusters: []vsphere.Cluster{{Name: "DC0_C0"}},
			DatastorePattern: "^LocalDS_", PersistentDatastorePattern: "^LocalDS_",
			VMFolder: "kpaas_vms", TemplateFolder: "kpaas_templates", DiskPath: "kpaas_disks",
		}},
	}
	for _, o := range opts {
		o(m, &c)
	}
	require.NoError(t, m.Create())
	if useTLS {
		m.Service.TLS = new(tls.Config)
	}
	s := m.Service.NewServer()
	if useTLS {
		c.ConnectionOptions.CACert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
	}
	t.Cleanup(func() { s.Close(); m.Remove() })
	u := *s.URL
	c.Host = u.Scheme + "://" + u.Host + u.Path
	c.User = u.User.Username()
	c.Password, _ = u.User.Password()
	d, err := vsphere.NewWithOptions(c, slog.New(slog.DiscardHandler), vsphere.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	sm := &Sim{Model: m, Server: s, Config: c, Driver: d}
	for _, obj := range m.Map().All("Datastore") {
		ds := obj.(*simulator.Datastore)
		if ds.Name == "LocalDS_0" {
			sm.DSDir = ds.Summary.Url
		}
	}
	require.NotEmpty(t, sm.DSDir, "simulator datastore LocalDS_0")
	return sm
}

// StemcellImage writes a stemcell `image` as BOSH's builder makes it: a
// tar.gz of image.ovf, image.mf and image-disk1.vmdk.
func StemcellImage(t testing.TB) string {
	t.Helper()
	ovf := imageOVF
	disk := bytes.Repeat([]byte{0x4b}, 512)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		body []byte
	}{{"image.ovf", ovf}, {"image.mf", []byte("SHA256(image.ovf)= x\n")}, {"image-disk1.vmdk", disk}} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(f.body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	p := filepath.Join(t.TempDir(), "image")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

// Files lists the files under the datastore directory (relative paths).
func (s *Sim) Files(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.DSDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(s.DSDir, p)
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// VMs lists the names of every VM and template in the simulator.
func (s *Sim) VMs() []string {
	var out []string
	for _, obj := range s.Model.Map().All("VirtualMachine") {
		out = append(out, obj.(*simulator.VirtualMachine).Name)
	}
	sort.Strings(out)
	return out
}

// Inventory is the conformance suite's leak probe: VMs and datastore files.
func (s *Sim) Inventory() ([]string, error) {
	var out []string
	for _, v := range s.VMs() {
		out = append(out, "vm:"+v)
	}
	var files []string
	err := filepath.WalkDir(s.DSDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(s.DSDir, p)
			files = append(files, "file:"+rel)
		}
		return nil
	})
	sort.Strings(files)
	return append(out, files...), err
}

// VM returns the simulator's VM behind a CID.
func (s *Sim) VM(t testing.TB, cid cpi.VMCID) *simulator.VirtualMachine {
	t.Helper()
	for _, obj := range s.Model.Map().All("VirtualMachine") {
		vm := obj.(*simulator.VirtualMachine)
		if vm.Name == string(cid) {
			return vm
		}
	}
	t.Fatalf("VM %s not in the simulator", cid)
	return nil
}

// ExtraConfig returns a VM's extraConfig as a map.
func ExtraConfig(vm *simulator.VirtualMachine) map[string]string {
	out := map[string]string{}
	for _, o := range vm.Config.ExtraConfig {
		ov := o.GetOptionValue()
		out[ov.Key] = fmt.Sprint(ov.Value)
	}
	return out
}

// Settings reads the settings a VM was given through guestinfo, and checks
// the env ISO on its CD-ROM carries the same document.
func (s *Sim) Settings(t testing.TB, cid cpi.VMCID) (*settings.Settings, error) {
	vm := s.VM(t, cid)
	ec := ExtraConfig(vm)
	if ec[vsphere.GuestinfoUserdataEncoding] != "base64" {
		return nil, fmt.Errorf("guestinfo.userdata.encoding = %q", ec[vsphere.GuestinfoUserdataEncoding])
	}
	doc, err := base64.StdEncoding.DecodeString(ec[vsphere.GuestinfoUserdata])
	if err != nil {
		return nil, err
	}
	iso := s.EnvISO(t, vm)
	if !bytes.Equal(doc, iso) {
		return nil, fmt.Errorf("env ISO and guestinfo differ:\n%s\n%s", iso, doc)
	}
	var st settings.Settings
	if err := json.Unmarshal(doc, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// EnvISO reads the ISO the VM's CD-ROM holds from the datastore directory.
func (s *Sim) EnvISO(t testing.TB, vm *simulator.VirtualMachine) []byte {
	t.Helper()
	for _, dev := range vm.Config.Hardware.Device {
		cd, ok := dev.(*types.VirtualCdrom)
		if !ok {
			continue
		}
		b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo)
		require.True(t, ok, "CD-ROM backed by an ISO, got %T", cd.Backing)
		require.True(t, cd.Connectable.StartConnected, "CD-ROM connected at power on")
		rel := strings.TrimPrefix(b.FileName, "[LocalDS_0] ")
		f, err := os.Open(filepath.Join(s.DSDir, rel))
		require.NoError(t, err, "env ISO %s", b.FileName)
		defer f.Close()
		doc, err := vsphere.ReadEnvISO(f)
		require.NoError(t, err)
		return doc
	}
	t.Fatalf("VM %s has no CD-ROM", vm.Name)
	return nil
}

// Manual returns the i-th VM's networks: a static IP on the standard port
// group and one on the distributed one.
func Manual(i int) cpi.Networks {
	return cpi.Networks{
		"default": {Type: "manual", IP: fmt.Sprintf("10.0.1.%d", 10+i), Netmask: "255.255.255.0", Gateway: "10.0.1.1",
			DNS: []string{"10.0.1.2"}, Default: []string{"dns", "gateway"}, CloudProperties: cpi.Props{"name": "VM Network"}},
		"second": {Type: "manual", IP: fmt.Sprintf("10.0.2.%d", 10+i), Netmask: "255.255.255.0", Gateway: "10.0.2.1",
			CloudProperties: cpi.Props{"name": "DC0_DVPG0"}},
	}
}
