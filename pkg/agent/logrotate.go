package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultMaxLogFileSize is BOSH's properties.logging.max_log_file_size default.
const DefaultMaxLogFileSize = 50 << 20

// maxLogFileSize reads properties.logging.max_log_file_size ("50M") from the
// applied spec, as BOSH's agent does for its logrotate configuration.
func (a *Agent) maxLogFileSize() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.spec != nil {
		if logging, ok := a.spec.Properties["logging"].(map[string]any); ok {
			if v, ok := logging["max_log_file_size"]; ok {
				if n, err := parseMemory(strings.TrimSpace(fmt.Sprint(v))); err == nil && n > 0 {
					return n
				}
			}
		}
	}
	return DefaultMaxLogFileSize
}

// RotateJobLogs rotates the *.log files jobs write themselves under
// /var/vcap/sys/log (the supervisor rotates the stdout/stderr it writes) the
// way BOSH's logrotate does: copytruncate past maxSize, keeping keep old
// copies. It returns how many files were rotated.
func (a *Agent) RotateJobLogs(maxSize int64, keep int) (int, error) {
	root := a.layout.SysLog()
	rotated := 0
	err := filepath.Walk(root+"/", func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(path, ".log") || fi.Size() <= maxSize {
			return nil
		}
		if err := copyTruncate(path, keep); err != nil {
			a.log.Warn("rotating a job log", "file", path, "err", err)
			return nil
		}
		rotated++
		return nil
	})
	return rotated, err
}

// copyTruncate shifts path.1..path.<keep-1> up, copies path to path.1 and
// truncates path, so a process holding it open keeps writing to it.
func copyTruncate(path string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	os.Remove(fmt.Sprintf("%s.%d", path, keep))
	for i := keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(path+".1", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Truncate(path, 0)
}

// RotateLogsEvery runs RotateJobLogs every interval until ctx ends.
func (a *Agent) RotateLogsEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.RotateJobLogs(a.maxLogFileSize(), 5)
		}
	}
}
