package release

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// File is one entry of a job, package or license: its name inside the archive
// (and in the fingerprint) and where its bytes are on disk.
type File struct {
	Name           string // relative path: "job.MF", "templates/x.erb", "packaging", "bin/run"
	Path           string // absolute path on disk
	ExcludeMode    bool   // packaging, pre_packaging and license files: no mode in the fingerprint
	FollowSymlinks bool   // jobs follow symlinks; packages keep them as links
}

// Fingerprint computes a bosh-cli (>= 5.5) fingerprint: "v2", then for every file
// sorted by name its name, the sha256: digest string of its content (of the link
// target string for an unfollowed symlink) and, unless excluded, its git-style
// mode (40755, symlink, 100755, 100644); then the sorted extra chunks joined by
// ','. The fingerprint is the hex SHA-256 of that string.
func Fingerprint(files []File, chunks []string) (string, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	io.WriteString(h, "v2")
	for _, f := range sorted {
		chunk, err := fileChunk(f)
		if err != nil {
			return "", fmt.Errorf("fingerprinting %s: %w", f.Path, err)
		}
		io.WriteString(h, chunk)
	}
	if len(chunks) > 0 {
		c := append([]string(nil), chunks...)
		sort.Strings(c)
		io.WriteString(h, strings.Join(c, ","))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileChunk(f File) (string, error) {
	info, err := os.Lstat(f.Path)
	if err != nil {
		return "", err
	}
	isLink := info.Mode()&os.ModeSymlink != 0
	var digest string
	if isLink && !f.FollowSymlinks {
		target, err := os.Readlink(f.Path)
		if err != nil {
			return "", err
		}
		s := sha256.Sum256([]byte(target))
		digest = "sha256:" + hex.EncodeToString(s[:])
	} else {
		digest, err = fileSHA256(f.Path)
		if err != nil {
			return "", err
		}
	}
	chunk := f.Name + digest
	if !f.ExcludeMode {
		// bosh-cli takes the mode from Lstat, so a followed symlink counts as 100755.
		switch {
		case info.IsDir():
			chunk += "40755"
		case isLink && !f.FollowSymlinks:
			chunk += "symlink"
		case info.Mode()&0o111 != 0:
			chunk += "100755"
		default:
			chunk += "100644"
		}
	}
	return chunk, nil
}

func fileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{fh}, *buf); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// globFiles returns the files under root whose slash-separated relative path
// matches pattern, where "**" matches any number of path segments and the other
// segments follow path.Match. Directories are skipped; symlinks are returned as
// files and not descended into.
func globFiles(root, pattern string) ([]string, error) {
	pattern = filepath.ToSlash(filepath.Clean(pattern))
	segs := strings.Split(pattern, "/")
	// Walk only below the pattern's literal prefix.
	n := 0
	for n < len(segs)-1 && !strings.ContainsAny(segs[n], `*?[\`) {
		n++
	}
	base := filepath.Join(append([]string{root}, segs[:n]...)...)
	stat := os.Lstat // a symlinked directory below src/ or blobs/ is not followed
	if n == 0 {
		stat = os.Stat // src/ itself may be a symlink
	}
	info, err := stat(base)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, nil
	}
	var out []string
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if matchSegs(segs, strings.Split(rel, "/")) {
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for i := 0; i <= len(name); i++ {
				if matchSegs(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
