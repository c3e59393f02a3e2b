package vsphere

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/nfc"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/progress"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kpaas/kpaas/cpi"
)

// CreateStemcell imports the stemcell image (a tar, optionally gzipped, of
// an .ovf and its .vmdk files, or a directory or .ovf path) as a template:
// CreateImportSpec, ImportVApp, upload through the NFC lease with progress,
// then a snapshot (so VMs are linked clones) and MarkAsTemplate.
func (d *Driver) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	dir, cleanup, err := unpackImage(imagePath)
	if err != nil {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: reading stemcell image %s: %w", imagePath, err)
	}
	defer cleanup()
	ovfPath, err := findOVF(dir)
	if err != nil {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: stemcell image %s: %w", imagePath, err)
	}
	desc, err := os.ReadFile(ovfPath)
	if err != nil {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: reading %s: %w", ovfPath, err)
	}
	c, err := d.vc(ctx)
	if err != nil {
		return "", err
	}
	var size int64
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".vmdk") {
				size += fi.Size()
			}
		}
	}
	dc := d.cfg.datacenter()
	ci, err := d.inv.cluster(ctx, c, dc.Clusters[0])
	if err != nil {
		return "", err
	}
	ds, err := d.inv.pickDatastore(ctx, c, ci.datastores, dc.DatastorePattern, nil, size)
	if err != nil {
		return "", classify(err)
	}
	folder, err := d.inv.folder(ctx, c, dc.TemplateFolder)
	if err != nil {
		return "", err
	}
	uuid := newUUID()
	cid := cpi.StemcellCID(stemcellPrefix + uuid)
	pool := object.NewResourcePool(c, ci.pool)
	params := types.OvfCreateImportSpecParams{
		EntityName:             string(cid),
		DiskProvisioning:       "thin",
		OvfManagerCommonParams: types.OvfManagerCommonParams{Locale: "US"},
	}
	spec, err := ovf.NewManager(c).CreateImportSpec(ctx, string(desc), pool, object.NewDatastore(c, ds.ref), &params)
	if err != nil {
		return "", classify(fmt.Errorf("vsphere: preparing the import of %s: %w", filepath.Base(ovfPath), err))
	}
	if len(spec.Error) > 0 {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: vCenter refuses stemcell %s: %s", filepath.Base(ovfPath), spec.Error[0].LocalizedMessage)
	}
	vmSpec, ok := spec.ImportSpec.(*types.VirtualMachineImportSpec)
	if !ok {
		return "", cpi.Errorf(cpi.TypeCloudError, false, "vsphere: stemcell %s is a vApp (%T), not one VM", filepath.Base(ovfPath), spec.ImportSpec)
	}
	vmSpec.ConfigSpec.InstanceUuid = uuid
	vmSpec.ConfigSpec.Annotation = fmt.Sprintf("kpaas stemcell %v %v", props["name"], props["version"])

	lease, err := pool.ImportVApp(ctx, vmSpec, folder, nil)
	if err != nil {
		return "", classify(fmt.Errorf("vsphere: starting the import of stemcell %s: %w", cid, err))
	}
	entity, err := d.uploadLease(ctx, lease, spec.FileItem, dir)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.CleanupTimeout))
		defer cancel()
		_ = lease.Abort(cctx, nil)
		if ref, ferr := d.inv.findByUUID(cctx, c, uuid); ferr == nil && ref != nil {
			_ = d.destroy(cctx, c, cpi.VMCID(cid), *ref)
		}
		return "", classify(fmt.Errorf("vsphere: uploading stemcell %s: %w", cid, err))
	}
	vm := object.NewVirtualMachine(c, entity)
	t, err := vm.CreateSnapshot(ctx, "kpaas-linked-clone-base", "base of the linked clones", false, false)
	if err == nil {
		_, err = d.wait(ctx, t, "snapshotting stemcell "+string(cid))
	}
	if err == nil {
		err = vm.MarkAsTemplate(ctx)
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.CleanupTimeout))
		defer cancel()
		_ = d.destroy(cctx, c, cpi.VMCID(cid), entity)
		return "", classify(fmt.Errorf("vsphere: making stemcell %s a template: %w", cid, err))
	}
	d.inv.forgetStores()
	return cid, nil
}

// uploadLease uploads the disks the lease asks for, reporting progress to
// vCenter (the lease updater) and to the log.
func (d *Driver) uploadLease(ctx context.Context, lease *nfc.Lease, items []types.OvfFileItem, dir string) (types.ManagedObjectReference, error) {
	info, err := lease.Wait(ctx, items)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("waiting for the NFC lease: %w", err)
	}
	updater := lease.StartUpdater(ctx, info)
	defer updater.Done()
	for _, item := range info.Items {
		f, err := os.Open(filepath.Join(dir, filepath.Base(item.Path)))
		if err != nil {
			return types.ManagedObjectReference{}, fmt.Errorf("opening %s: %w", item.Path, err)
		}
		fi, _ := f.Stat()
		sink := &logSink{d: d, file: item.Path}
		opts := soap.Upload{ContentLength: fi.Size(), Progress: multiSink{item, sink}}
		err = lease.Upload(ctx, item, f, opts)
		_ = f.Close()
		if err != nil {
			return types.ManagedObjectReference{}, fmt.Errorf("uploading %s: %w", item.Path, err)
		}
	}
	if err := lease.Complete(ctx); err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("completing the NFC lease: %w", err)
	}
	return info.Entity, nil
}

// multiSink fans progress reports out.
type multiSink []progress.Sinker

func (m multiSink) Sink() chan<- progress.Report {
	ch := make(chan progress.Report)
	outs := make([]chan<- progress.Report, len(m))
	for i, s := range m {
		outs[i] = s.Sink()
	}
	go func() {
		for r := range ch {
			for _, o := range outs {
				o <- r
			}
		}
		for _, o := range outs {
			close(o)
		}
	}()
	return ch
}

// logSink logs upload progress every 10%.
type logSink struct {
	d    *Driver
	file string
	last atomic.Int32
}

func (l *logSink) Sink() chan<- progress.Report {
	ch := make(chan progress.Report)
	go func() {
		for r := range ch {
			pct := int32(r.Percentage())
			if pct/10 > l.last.Load()/10 || pct == 100 && l.last.Load() != 100 {
				l.last.Store(pct)
				l.d.log.Info("vsphere: uploading stemcell", "file", l.file, "percent", pct, "detail", r.Detail())
			}
		}
	}()
	return ch
}

// DeleteStemcell destroys the template; a missing one is deleted.
func (d *Driver) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	c, err := d.vc(ctx)
	if err != nil {
		return err
	}
	d.inv.forgetTemplate(cid)
	uuid, ok := strings.CutPrefix(string(cid), stemcellPrefix)
	if !ok {
		return nil
	}
	ref, err := d.inv.findByUUID(ctx, c, uuid)
	if err != nil || ref == nil {
		return err
	}
	t, err := object.NewVirtualMachine(c, *ref).Destroy(ctx)
	if err == nil {
		_, err = d.wait(ctx, t, "deleting stemcell "+string(cid))
	}
	if err != nil && !notFound(err) {
		return classify(fmt.Errorf("vsphere: deleting stemcell %s: %w", cid, err))
	}
	d.inv.forgetStores()
	return nil
}

// unpackImage returns a directory holding the .ovf and its disks.
func unpackImage(p string) (string, func(), error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", nil, err
	}
	if fi.IsDir() {
		return p, func() {}, nil
	}
	if strings.HasSuffix(p, ".ovf") {
		return filepath.Dir(p), func() {}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return "", nil, err
		}
		defer gz.Close()
		r = gz
	}
	dir, err := os.MkdirTemp("", "kpaas-vsphere-stemcell-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("not a tar of an OVF and its disks: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Base(h.Name)
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			cleanup()
			return "", nil, err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return "", nil, err
		}
		n++
	}
	if n == 0 {
		cleanup()
		return "", nil, errors.New("the image holds no files")
	}
	return dir, cleanup, nil
}

func findOVF(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "*.ovf"))
	if len(m) != 1 {
		return "", fmt.Errorf("want exactly one .ovf in the image, found %d", len(m))
	}
	return m[0], nil
}
