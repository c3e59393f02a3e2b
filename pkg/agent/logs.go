package agent

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
)

// FetchLogs writes a tar.gz of /var/vcap/sys/log (only the jobs' folders
// when jobs is not empty) to w.
func (a *Agent) FetchLogs(ctx context.Context, req protocol.FetchLogsRequest, w io.Writer) error {
	root := a.layout.SysLog()
	var include func(string) bool
	if len(req.Jobs) > 0 {
		want := map[string]bool{}
		for _, j := range req.Jobs {
			want[j] = true
		}
		include = func(rel string) bool {
			top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
			return want[top]
		}
	}
	return writeTarGz(w, root+"/", include)
}

// logFiles lists the log files under sys/log (of jobs, when given).
func (a *Agent) logFiles(jobs []string) []string {
	root := a.layout.SysLog()
	var out []string
	want := map[string]bool{}
	for _, j := range jobs {
		want[j] = true
	}
	filepath.Walk(root+"/", func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if len(want) > 0 && !want[top] {
			return nil
		}
		if !strings.HasSuffix(rel, ".log") {
			return nil // rotated copies (x.log.1) and others
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out
}

// tailState follows one file.
type tailState struct {
	rel  string
	f    *os.File
	ino  uint64
	off  int64
	part []byte
}

// TailLogs writes the last req.Num lines of each log file as
// "<file>: <line>" and, when req.Follow, new lines as they are written
// (new files, truncation and rotation included) until ctx ends.
func (a *Agent) TailLogs(ctx context.Context, req protocol.TailLogsRequest, w io.Writer) error {
	root := a.layout.SysLog()
	bw := bufio.NewWriter(w)
	files := map[string]*tailState{}
	defer func() {
		for _, t := range files {
			t.f.Close()
		}
	}()
	num := req.Num
	if num == 0 && !req.Follow {
		num = 10
	}
	open := func(rel string, fromEnd bool) {
		f, err := os.Open(filepath.Join(root, rel))
		if err != nil {
			return
		}
		fi, _ := f.Stat()
		t := &tailState{rel: rel, f: f, ino: inode(fi)}
		if fromEnd {
			lines, off := lastLines(f, fi.Size(), num)
			for _, l := range lines {
				bw.WriteString(rel + ": " + l + "\n")
			}
			t.off = off
		}
		f.Seek(t.off, io.SeekStart)
		files[rel] = t
	}
	for _, rel := range a.logFiles(req.Jobs) {
		open(rel, true)
	}
	if err := bw.Flush(); err != nil || !req.Follow {
		return err
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, rel := range a.logFiles(req.Jobs) {
			if _, ok := files[rel]; !ok {
				open(rel, false) // a new file: everything in it is new
			}
		}
		for rel, t := range files {
			fi, err := os.Stat(filepath.Join(root, rel))
			if err == nil && (inode(fi) != t.ino || fi.Size() < t.off) {
				// rotated or truncated: finish nothing more from the old one, start over
				t.f.Close()
				delete(files, rel)
				open(rel, false)
				t = files[rel]
				if t == nil {
					continue
				}
			}
			for {
				n, err := t.f.Read(buf)
				if n > 0 {
					t.off += int64(n)
					t.part = append(t.part, buf[:n]...)
					for {
						i := bytes.IndexByte(t.part, '\n')
						if i < 0 {
							break
						}
						bw.WriteString(rel + ": ")
						bw.Write(t.part[:i+1])
						t.part = t.part[i+1:]
					}
				}
				if err != nil || n == 0 {
					break
				}
			}
		}
		if err := bw.Flush(); err != nil {
			return nil // the reader went away
		}
	}
}

func inode(fi os.FileInfo) uint64 {
	if fi == nil {
		return 0
	}
	if st, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		return st.Ino()
	}
	return statIno(fi)
}

// lastLines returns the last n complete lines of f (size bytes) and the
// offset just after them.
func lastLines(f *os.File, size int64, n int) ([]string, int64) {
	if n <= 0 {
		return nil, size
	}
	const chunk = 64 << 10
	var data []byte
	off := size
	for off > 0 && bytes.Count(data, []byte{'\n'}) <= n {
		step := int64(chunk)
		if off < step {
			step = off
		}
		off -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
			break
		}
		data = append(b, data...)
	}
	// only complete lines; a trailing partial line is followed later
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return nil, off
	}
	complete := data[:end]
	lines := strings.Split(string(complete), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, off + int64(end) + 1
}
