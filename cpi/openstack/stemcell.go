package openstack

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/kpaas/kpaas/cpi"
)

// lightSuffix marks the CID of a light stemcell (an image that exists
// already), as bosh-openstack-cpi does: delete_stemcell leaves the image alone.
const lightSuffix = " light"

// imageID is the Glance image ID behind a stemcell CID.
func imageID(cid cpi.StemcellCID) string { return strings.TrimSuffix(string(cid), lightSuffix) }

// CreateStemcell uploads the stemcell's image to Glance (qcow2 or raw, bare
// or inside the stemcell's image tarball as root.img), or, for a light
// stemcell (cloud_properties.image_id), checks that the image exists.
func (o *CPI) CreateStemcell(ctx context.Context, imagePath string, props cpi.Props) (cpi.StemcellCID, error) {
	if id := propString(props, "image_id"); id != "" {
		img, err := images.Get(ctx, o.c.image, id).Extract()
		if err != nil {
			if isNotFound(err) {
				return "", cloudErr("light stemcell: image "+id, err, "the image named by the light stemcell does not exist in this project; upload it or fix image_id", false)
			}
			return "", apiErr("light stemcell: getting image "+id, err)
		}
		if img.Status != images.ImageStatusActive {
			return "", cloudErr(fmt.Sprintf("light stemcell: image %s is %s, not active", id, img.Status), nil, "", false)
		}
		return cpi.StemcellCID(id + lightSuffix), nil
	}

	f, err := os.Open(imagePath)
	if err != nil {
		return "", cloudErr("reading stemcell image "+imagePath, err, "", false)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", cloudErr("reading stemcell image "+imagePath, err, "", false)
	}
	body, total, err := rootImage(f, st.Size())
	if err != nil {
		return "", cloudErr("reading stemcell image "+imagePath, err, "", false)
	}

	diskFormat := propString(props, "disk_format")
	if diskFormat == "" {
		diskFormat = "qcow2"
	}
	containerFormat := propString(props, "container_format")
	if containerFormat == "" {
		containerFormat = "bare"
	}
	name := "kpaas-stemcell-" + newUUID()
	if n, v := propString(props, "name"), propString(props, "version"); n != "" {
		name = n
		if v != "" {
			name += "/" + v
		}
	}
	visibility := images.ImageVisibilityPrivate
	if o.cfg.OpenStack.StemcellPublicVisibility {
		visibility = images.ImageVisibilityPublic
	}
	properties := map[string]string{"created_by": "kpaas"}
	for _, k := range []string{"version", "os_type", "os_distro", "architecture", "auto_disk_config", "hw_vif_model",
		"hypervisor_type", "vmware_adaptertype", "vmware_disktype", "vmware_linked_clone", "vmware_ostype", "hw_disk_bus", "hw_scsi_model"} {
		if v, ok := props[k]; ok && v != nil {
			properties[k] = fmt.Sprint(v)
		}
	}
	img, err := images.Create(ctx, o.c.image, images.CreateOpts{
		Name: name, DiskFormat: diskFormat, ContainerFormat: containerFormat,
		Visibility: &visibility, Properties: properties,
	}).Extract()
	if err != nil {
		return "", apiErr("creating Glance image "+name, err)
	}
	o.log.Info("uploading stemcell image", "image", img.ID, "name", name, "bytes", total, "disk_format", diskFormat)
	fail := func(op string, err error) (cpi.StemcellCID, error) {
		cctx, cancel := o.cleanupCtx(ctx)
		defer cancel()
		if derr := images.Delete(cctx, o.c.image, img.ID).ExtractErr(); derr != nil && !isNotFound(derr) {
			o.log.Warn("deleting half-made image", "image", img.ID, "error", derr)
		}
		return "", apiErr(op, err)
	}
	pr := &progressReader{r: body, total: total, report: o.progress()}
	if err := imagedata.Upload(ctx, o.c.image, img.ID, pr).ExtractErr(); err != nil {
		return fail(fmt.Sprintf("uploading stemcell image to Glance image %s (%d bytes sent)", img.ID, pr.sent), err)
	}
	err = o.poll(ctx, "image "+img.ID+" to become active", func(ctx context.Context) (bool, error) {
		got, err := images.Get(ctx, o.c.image, img.ID).Extract()
		if err != nil {
			return false, err
		}
		switch got.Status {
		case images.ImageStatusActive:
			return true, nil
		case images.ImageStatusKilled, images.ImageStatusDeleted, images.ImageStatusPendingDelete, images.ImageStatusDeactivated:
			return false, fmt.Errorf("image %s went %s after the upload", img.ID, got.Status)
		}
		return false, nil
	})
	if err != nil {
		return fail("waiting for Glance image "+img.ID, err)
	}
	return cpi.StemcellCID(img.ID), nil
}

// rootImage returns the disk image inside f: root.img when f is the BOSH
// stemcell's image tarball (gzipped or not), else f itself.
func rootImage(f *os.File, size int64) (io.Reader, int64, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(512)
	var r io.Reader = br
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, fmt.Errorf("opening gzip: %w", err)
		}
		gbr := bufio.NewReaderSize(gz, 1<<20)
		head, _ = gbr.Peek(512)
		if !isTar(head) {
			return gbr, -1, nil // a gzipped disk image: Glance gets it unpacked
		}
		r = gbr
	} else if !isTar(head) {
		return br, size, nil
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("the stemcell image tarball has no root.img")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading the stemcell image tarball: %w", err)
		}
		if strings.TrimPrefix(h.Name, "./") == "root.img" {
			return tr, h.Size, nil
		}
	}
}

func isTar(head []byte) bool { return len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")) }

func (o *CPI) progress() func(sent, total int64) {
	if o.deps.Progress != nil {
		return o.deps.Progress
	}
	last := int64(-1)
	return func(sent, total int64) {
		if total <= 0 {
			return
		}
		if pct := sent * 100 / total; pct/10 != last/10 || sent == total {
			last = pct
			o.log.Info("stemcell upload", "sent", sent, "total", total, "percent", pct)
		}
	}
}

type progressReader struct {
	r      io.Reader
	sent   int64
	total  int64
	report func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.sent += int64(n)
	if n > 0 || errors.Is(err, io.EOF) {
		p.report(p.sent, p.total)
	}
	return n, err
}

// DeleteStemcell deletes the Glance image; an unknown image or a light
// stemcell's is left alone.
func (o *CPI) DeleteStemcell(ctx context.Context, cid cpi.StemcellCID) error {
	if strings.HasSuffix(string(cid), lightSuffix) {
		return nil
	}
	err := images.Delete(ctx, o.c.image, string(cid)).ExtractErr()
	if err != nil && !isNotFound(err) {
		return apiErr("deleting stemcell image "+string(cid), err)
	}
	return nil
}

func propString(p map[string]any, k string) string {
	if v, ok := p[k]; ok && v != nil {
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprint(v)
	}
	return ""
}
