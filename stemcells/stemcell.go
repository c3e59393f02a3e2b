// Package stemcells builds and reads stemcells in BOSH's tarball format: a
// tar.gz holding stemcell.MF (name, version, operating_system, api_version,
// stemcell_formats, cloud_properties, sha1 of the image) and the image. For the
// local cloud the image is a tar.gz of the root filesystem (BOSH's warden-tar
// format). Builders: Tiny (busybox plus the agent, offline, in seconds, for
// tests) and Debian (debootstrap minbase bookworm plus the agent). It imports
// no CPI driver; drivers and commands import it.
package stemcells

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// Manifest is stemcell.MF.
type Manifest struct {
	Name            string         `yaml:"name" json:"name"`
	Version         string         `yaml:"version" json:"version"`
	OperatingSystem string         `yaml:"operating_system" json:"operating_system"`
	SHA1            string         `yaml:"sha1" json:"sha1"`
	APIVersion      int            `yaml:"api_version" json:"api_version"`
	BoshProtocol    string         `yaml:"bosh_protocol,omitempty" json:"bosh_protocol,omitempty"`
	StemcellFormats []string       `yaml:"stemcell_formats" json:"stemcell_formats"`
	CloudProperties map[string]any `yaml:"cloud_properties" json:"cloud_properties"`
}

// FormatLocal is the image format of the local cloud: a tar.gz of the root
// filesystem (BOSH's warden-tar).
const FormatLocal = "warden-tar"

// AgentPath is where the agent lives in every kpaas stemcell; the local cloud
// runs it as the VM's init.
const AgentPath = "/var/vcap/bosh/bin/kpaas-agent"

// ParseManifest reads stemcell.MF.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing stemcell.MF: %w", err)
	}
	var probs []error
	if m.Name == "" {
		probs = append(probs, errors.New("name is missing"))
	}
	if m.Version == "" {
		probs = append(probs, errors.New("version is missing"))
	}
	if m.OperatingSystem == "" {
		probs = append(probs, errors.New("operating_system is missing"))
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("invalid stemcell.MF: %w", errors.Join(probs...))
	}
	if m.APIVersion == 0 {
		m.APIVersion = 1
	}
	return &m, nil
}

// Tarball is an opened stemcell tarball: its manifest and the image,
// extracted to a file.
type Tarball struct {
	Manifest  Manifest
	ImagePath string
}

// Open extracts stemcell.MF and image from the stemcell tarball at path into
// dir and checks the image's SHA-1 against the manifest.
func Open(path, dir string) (*Tarball, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening stemcell: %w", err)
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		return nil, fmt.Errorf("reading stemcell %s: not a tar.gz: %w", path, err)
	}
	tr := tar.NewReader(gz)
	var mf *Manifest
	var imageSum string
	imagePath := filepath.Join(dir, "image")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading stemcell %s: %w", path, err)
		}
		switch filepath.Clean(h.Name) {
		case "stemcell.MF":
			b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("reading stemcell.MF: %w", err)
			}
			if mf, err = ParseManifest(b); err != nil {
				return nil, fmt.Errorf("stemcell %s: %w", path, err)
			}
		case "image":
			out, err := os.Create(imagePath)
			if err != nil {
				return nil, fmt.Errorf("extracting stemcell image: %w", err)
			}
			sum := sha1.New()
			_, err = io.Copy(io.MultiWriter(out, sum), tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("extracting stemcell image: %w", err)
			}
			imageSum = hex.EncodeToString(sum.Sum(nil))
		}
	}
	if mf == nil {
		return nil, fmt.Errorf("stemcell %s has no stemcell.MF", path)
	}
	if imageSum == "" {
		return nil, fmt.Errorf("stemcell %s has no image", path)
	}
	if mf.SHA1 != "" && !digestMatches(mf.SHA1, imageSum) {
		return nil, fmt.Errorf("stemcell %s: image sha1 is %s but stemcell.MF says %s: the file is damaged, download or build it again", path, imageSum, mf.SHA1)
	}
	return &Tarball{Manifest: *mf, ImagePath: imagePath}, nil
}

// digestMatches accepts a bare SHA-1 or a "sha1:" prefixed one (multi-digests
// with other algorithms are accepted when their sha1 part matches).
func digestMatches(want, sha1hex string) bool {
	for _, part := range splitDigest(want) {
		if part == sha1hex || part == "sha1:"+sha1hex {
			return true
		}
	}
	return false
}

func splitDigest(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ';' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// Write packs mf and the image file into a stemcell tarball at out, filling
// in mf.SHA1.
func Write(out string, mf Manifest, imagePath string) error {
	sum, size, err := fileSHA1(imagePath)
	if err != nil {
		return err
	}
	mf.SHA1 = sum
	mfb, err := yaml.Marshal(mf)
	if err != nil {
		return fmt.Errorf("encoding stemcell.MF: %w", err)
	}
	tmp := out + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing stemcell: %w", err)
	}
	defer os.Remove(tmp)
	gz := gzip.NewWriter(fh)
	tw := tar.NewWriter(gz)
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Name: "stemcell.MF", Mode: 0o644, Size: int64(len(mfb)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(mfb); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "image", Mode: 0o644, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	img, err := os.Open(imagePath)
	if err != nil {
		return err
	}
	_, err = io.Copy(tw, img)
	img.Close()
	if err != nil {
		return fmt.Errorf("writing stemcell image: %w", err)
	}
	for _, c := range []io.Closer{tw, gz} {
		if err := c.Close(); err != nil {
			return fmt.Errorf("writing stemcell: %w", err)
		}
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func fileSHA1(path string) (string, int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("reading image: %w", err)
	}
	defer fh.Close()
	h := sha1.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return "", 0, fmt.Errorf("reading image: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
