package release

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Version is a semi-semantic version as bosh-cli orders them: a release segment,
// an optional pre-release after '-' and an optional post-release after '+'
// ("1", "3+dev.2", "1.2-rc.1"). Each segment is dot-separated components,
// numbers compared as numbers, words as text, numbers before words.
type Version struct {
	Release, Pre, Post []string
	text               string
}

// ParseVersion parses a semi-semantic version.
func ParseVersion(s string) (Version, error) {
	v := Version{text: s}
	if s == "" {
		return v, fmt.Errorf("parsing version: empty")
	}
	rest := s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		v.Post, rest = strings.Split(rest[i+1:], "."), rest[:i]
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		v.Pre, rest = strings.Split(rest[i+1:], "."), rest[:i]
	}
	v.Release = strings.Split(rest, ".")
	for _, seg := range [][]string{v.Release, v.Pre, v.Post} {
		for _, c := range seg {
			if c == "" || !alnumDash(c) {
				return v, fmt.Errorf("parsing version %q: component %q is not alphanumeric", s, c)
			}
		}
	}
	return v, nil
}

func alnumDash(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (v Version) String() string {
	if v.text != "" {
		return v.text
	}
	s := strings.Join(v.Release, ".")
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	if len(v.Post) > 0 {
		s += "+" + strings.Join(v.Post, ".")
	}
	return s
}

// Compare returns -1, 0 or 1. A pre-release sorts before its release; a
// post-release sorts after it.
func (v Version) Compare(o Version) int {
	if c := compareSeg(v.Release, o.Release); c != 0 {
		return c
	}
	switch {
	case len(v.Pre) > 0 && len(o.Pre) == 0:
		return -1
	case len(v.Pre) == 0 && len(o.Pre) > 0:
		return 1
	}
	if c := compareSeg(v.Pre, o.Pre); c != 0 {
		return c
	}
	return compareSeg(v.Post, o.Post)
}

func compareSeg(a, b []string) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		if i >= len(a) {
			return -1
		}
		if i >= len(b) {
			return 1
		}
		an, bn := isDigits(a[i]), isDigits(b[i])
		switch {
		case an && bn:
			if c := compareDecimal(a[i], b[i]); c != 0 {
				return c
			}
		case an:
			return -1
		case bn:
			return 1
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return 0
}

// NextDev is the next dev version after v: its post-release's last number
// incremented ("3+dev.1" -> "3+dev.2"), or "+dev.1" appended to a final version.
func (v Version) NextDev() Version {
	n := Version{Release: v.Release, Pre: v.Pre}
	if len(v.Post) == 0 {
		n.Post = []string{"dev", "1"}
		return n
	}
	n.Post = incrementLast(v.Post)
	return n
}

// NextFinal is the next final version: the release segment's last number
// incremented, pre and post dropped ("3" -> "4", "3+dev.2" -> "4").
func (v Version) NextFinal() Version {
	return Version{Release: incrementLast(v.Release)}
}

func incrementLast(seg []string) []string {
	out := append([]string(nil), seg...)
	for i := len(out) - 1; i >= 0; i-- {
		if isDigits(out[i]) {
			out[i] = incrementDecimal(out[i])
			return out
		}
	}
	return append(out, "1")
}

// releaseIndex is dev_releases/<name>/index.yml or releases/<name>/index.yml.
type releaseIndex struct {
	Builds        map[string]indexBuild `yaml:"builds"`
	FormatVersion string                `yaml:"format-version"`
}

type indexBuild struct {
	Version string `yaml:"version"`
}

func indexDir(dir, name string, final bool) string {
	if final {
		return filepath.Join(dir, "releases", name)
	}
	return filepath.Join(dir, "dev_releases", name)
}

func readIndex(dir, name string, final bool) (releaseIndex, error) {
	var idx releaseIndex
	p := filepath.Join(indexDir(dir, name, final), "index.yml")
	data, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return releaseIndex{Builds: map[string]indexBuild{}, FormatVersion: "2"}, nil
	}
	if err != nil {
		return idx, err
	}
	if err := yaml.Unmarshal(data, &idx); err != nil {
		return idx, fmt.Errorf("parsing %s: %w", p, err)
	}
	if idx.Builds == nil {
		idx.Builds = map[string]indexBuild{}
	}
	return idx, nil
}

// Versions lists the versions recorded for release name in dir: the final ones
// (releases/<name>/index.yml) or the dev ones (dev_releases/<name>/index.yml).
func Versions(dir, name string, final bool) ([]Version, error) {
	idx, err := readIndex(dir, name, final)
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, b := range idx.Builds {
		v, err := ParseVersion(b.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(indexDir(dir, name, final), "index.yml"), err)
		}
		out = append(out, v)
	}
	return out, nil
}

func latest(vs []Version) (Version, bool) {
	var best Version
	found := false
	for _, v := range vs {
		if !found || v.Compare(best) > 0 {
			best, found = v, true
		}
	}
	return best, found
}

// NextDevVersion is bosh-cli's next dev version: the latest dev or final
// version with its dev number incremented; "0+dev.1" for a new release.
func NextDevVersion(dir, name string) (Version, error) {
	dev, err := Versions(dir, name, false)
	if err != nil {
		return Version{}, err
	}
	final, err := Versions(dir, name, true)
	if err != nil {
		return Version{}, err
	}
	last, ok := latest(append(dev, final...))
	if !ok {
		last = Version{Release: []string{"0"}}
	}
	return last.NextDev(), nil
}

// NextFinalVersion is the latest final version plus one; "1" for the first.
func NextFinalVersion(dir, name string) (Version, error) {
	final, err := Versions(dir, name, true)
	if err != nil {
		return Version{}, err
	}
	last, ok := latest(final)
	if !ok {
		return Version{Release: []string{"1"}}, nil
	}
	return last.NextFinal(), nil
}

// ErrVersionExists is returned by RecordRelease for a version already recorded.
type ErrVersionExists struct{ Name, Version string }

func (e *ErrVersionExists) Error() string {
	return fmt.Sprintf("release %s/%s already exists: give another --version or leave it out to get the next one", e.Name, e.Version)
}

// RecordRelease writes the release manifest as <name>-<version>.yml and adds
// the version to index.yml, under dev_releases/<name>/ or releases/<name>/.
func RecordRelease(dir string, m *Manifest, final bool) error {
	idx, err := readIndex(dir, m.Name, final)
	if err != nil {
		return err
	}
	for _, b := range idx.Builds {
		if b.Version == m.Version {
			return &ErrVersionExists{Name: m.Name, Version: m.Version}
		}
	}
	id, err := newUUID()
	if err != nil {
		return err
	}
	idx.Builds[id] = indexBuild{Version: m.Version}
	idx.FormatVersion = "2"
	base := indexDir(dir, m.Name, final)
	mf, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(base, m.Name+"-"+m.Version+".yml"), func(w io.Writer) error { _, err := w.Write(mf); return err }); err != nil {
		return err
	}
	data, err := yaml.Marshal(idx)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(base, "index.yml"), func(w io.Writer) error { _, err := w.Write(data); return err })
}

func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// GitState is the commit_hash and uncommitted_changes of a release directory:
// `git rev-parse --short HEAD` and whether `git status --porcelain` is non-empty;
// "non-git" when dir is not in a git work tree or git is absent.
func GitState(dir string) (commit string, dirty bool) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "non-git", false
	}
	commit = strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--", ".").Output()
	if err != nil {
		return commit, false
	}
	return commit, len(strings.TrimSpace(string(st))) > 0
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// incrementDecimal adds one to a decimal string of any length ("099" -> "100").
func incrementDecimal(s string) string {
	b := []byte(strings.TrimLeft(s, "0"))
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < '9' {
			b[i]++
			return string(b)
		}
		b[i] = '0'
	}
	return "1" + string(b)
}

func compareDecimal(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
