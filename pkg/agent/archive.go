package agent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// extractArchive unpacks a tar or tar.gz file into dir (created), refusing
// entries that would escape it.
func extractArchive(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("%s: entry %q escapes the target directory", path, h.Name)
		}
		target := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode & 0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode|0o200)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extracting %s: %w", h.Name, err)
			}
			os.Chmod(target, mode)
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Join(dir, filepath.Clean(strings.TrimPrefix(h.Linkname, "./")))
			if !strings.HasPrefix(src, filepath.Clean(dir)+string(os.PathSeparator)) {
				return fmt.Errorf("%s: hard link %q escapes the target directory", path, h.Linkname)
			}
			os.Remove(target)
			if err := os.Link(src, target); err != nil {
				return err
			}
		}
	}
}

// writeTarGz writes the tree under dir (paths "./"-prefixed, as BOSH's
// archives) as a tar.gz to w. include filters top-level entries when set.
func writeTarGz(w io.Writer, dir string, include func(rel string) bool) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		if include != nil && !include(rel) {
			if fi.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(path)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil // sockets and the like
		}
		h.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if fi.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return nil // vanished or unreadable: skip
			}
			defer f.Close()
			// A log being written may grow while we copy: send what the header says.
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, h.Size)
			if err == io.EOF {
				return fmt.Errorf("%s shrank while archiving", path)
			}
			return err
		}
		if !fi.IsDir() && link == "" {
			return nil
		}
		return tw.WriteHeader(h)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
