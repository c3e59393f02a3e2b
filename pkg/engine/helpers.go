package engine

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/kpaas/kpaas/cpi"
	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/blobstore"
	"github.com/kpaas/kpaas/pkg/compile"
	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
)

// jsonable turns YAML's map[any]any into map[string]any, recursively.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[fmt.Sprint(k)] = jsonable(v)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = jsonable(v)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = jsonable(v)
		}
		return out
	}
	return v
}

// PackageSource puts packages/<name>.tgz of a release tarball into the
// blobstore and returns its SHA-256.
func PackageSource(blobs *blobstore.Store, tarball, name string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return "", err
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	want := "packages/" + name + ".tgz"
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return "", fmt.Errorf("release tarball %s has no %s", tarball, want)
		}
		if err != nil {
			return "", err
		}
		if strings.TrimPrefix(path.Clean(hdr.Name), "./") == want {
			id, _, err := blobs.Put(tr)
			return id, err
		}
	}
}

// compileWorkers makes compile VMs from the cloud-config's compilation block.
type compileWorkers struct {
	r  *run
	sc state.Stemcell
}

func (w *compileWorkers) Start(ctx context.Context, n int) (compile.Agent, func(context.Context) error, error) {
	r := w.r
	cc := r.prep.Cloud.Compilation
	if cc == nil {
		return nil, nil, errors.New("the cloud-config has no compilation block (workers, network, az, vm_type): add one")
	}
	c, cpiName, err := r.e.CPIs(cc.AZ)
	if err != nil {
		return nil, nil, err
	}
	var sc state.Stemcell
	found := false
	for _, s := range r.prep.AllStemcells {
		if s.Name == w.sc.Name && s.Version == w.sc.Version && (s.CPI == cpiName || s.CPI == "" && cpiName == "default") {
			sc, found = s, true
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("stemcell %s/%s is not uploaded to cpi %s", w.sc.Name, w.sc.Version, cpiName)
	}
	props := map[string]any{}
	if z := r.prep.Cloud.AZ(cc.AZ); z != nil {
		for k, v := range z.CloudProperties {
			props[k] = v
		}
	}
	if vt := r.prep.Cloud.VMType(cc.VMType); vt != nil {
		for k, v := range vt.CloudProperties {
			props[k] = v
		}
	}
	for k, v := range cc.CloudProperties {
		props[k] = v
	}
	netw := r.prep.Cloud.Network(cc.Network)
	if netw == nil {
		return nil, nil, fmt.Errorf("compilation network %q is not in the cloud-config", cc.Network)
	}
	cn := cpi.Network{Type: netw.TypeOrDefault(), Default: []string{"dns", "gateway"}, CloudProperties: netw.CloudProperties}
	owner := "compile-" + strconv.Itoa(n) + "-" + newUUID()[:8]
	var reserved string
	if cn.Type == manifest.NetworkManual {
		subs := netw.SubnetsIn(cc.AZ)
		if len(subs) == 0 {
			return nil, nil, fmt.Errorf("compilation network %q has no subnet in az %q", cc.Network, cc.AZ)
		}
		s := subs[0]
		ips, err := s.IPs()
		if err != nil {
			return nil, nil, err
		}
		for ip := range ips.Dynamic.All() {
			err := r.e.State.ReserveIP(ctx, state.IPReservation{Network: cc.Network, IP: ip.String(), Deployment: r.p.Deployment, Instance: owner})
			if errors.Is(err, state.ErrIPTaken) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			reserved = ip.String()
			break
		}
		if reserved == "" {
			return nil, nil, fmt.Errorf("compilation network %q: no free IP", cc.Network)
		}
		cn.IP, cn.Gateway, cn.DNS, cn.CloudProperties = reserved, s.Gateway, s.DNS, s.CloudProperties
		bits := ips.Range.Bits()
		cn.Netmask = net.IP(net.CIDRMask(bits, 32)).String()
		_ = netip.Addr{}
	}
	release := func(ctx context.Context) error {
		if reserved != "" {
			return r.e.State.ReleaseIP(ctx, cc.Network, reserved)
		}
		return nil
	}
	host, err := agentclient.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	env := cpi.Env{"kpaas": map[string]any{"host_key": host.PrivatePEM, "authorized_keys": []string{r.e.ClientKey.Public}}}
	agentID := "agent-" + owner
	name := "compilation/" + strconv.Itoa(n)
	var vmCID cpi.VMCID
	var got cpi.Networks
	if err := r.e.step("compiling", name, "create_vm", func() error {
		var err error
		vmCID, got, err = c.CreateVM(ctx, cpi.AgentID(agentID), cpi.StemcellCID(sc.CID), props, cpi.Networks{cc.Network: cn}, nil, env)
		if err != nil {
			return err
		}
		return r.e.State.SaveVM(ctx, state.VM{CID: string(vmCID), Deployment: r.p.Deployment, AgentID: agentID, IPs: agentIPs(got, cpi.Networks{cc.Network: cn}),
			Stemcell: sc.Name + "/" + sc.Version, SSHHostKey: host.Public, Active: true, CreatedAt: r.e.now()})
	}); err != nil {
		_ = release(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	ips := agentIPs(got, cpi.Networks{cc.Network: cn})
	cleanup := func(ctx context.Context) error {
		err := r.e.step("compiling", name, "delete_vm", func() error {
			if err := c.DeleteVM(ctx, vmCID); err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
				return err
			}
			return r.e.State.DeleteVM(ctx, string(vmCID))
		})
		return errors.Join(err, release(ctx))
	}
	if len(ips) == 0 {
		return nil, cleanup, errors.New("the compile VM has no IP")
	}
	a := r.e.Dial(agentclient.Target{Name: name, Address: net.JoinHostPort(ips[0], "6868"), HostKey: host.Public, Signer: r.e.ClientKey.Signer})
	if err := r.e.step("compiling", name, "wait_agent", func() error { return r.waitAgent(ctx, a) }); err != nil {
		_ = cleanup(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	return a, cleanup, nil
}
