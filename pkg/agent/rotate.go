package agent

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
)

// RotatingFile is an append-only log file that is rotated when it grows past
// MaxSize: f.log -> f.log.1 -> ... -> f.log.<Keep>, the oldest dropped.
type RotatingFile struct {
	Path    string
	MaxSize int64
	Keep    int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenRotating opens (appending) path.
func OpenRotating(path string, maxSize int64, keep int) (*RotatingFile, error) {
	r := &RotatingFile{Path: path, MaxSize: maxSize, Keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p would not fit. A large write is
// split at line boundaries so no file grows past MaxSize (a line longer than
// MaxSize is cut).
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if r.MaxSize > 0 && r.size+int64(len(p)) > r.MaxSize {
			room := r.MaxSize - r.size
			cut := 0
			if room > 0 {
				cut = bytes.LastIndexByte(p[:min(int64(len(p)), room)], '\n') + 1
			}
			if cut == 0 {
				if r.size > 0 {
					if err := r.rotate(); err != nil {
						return written, fmt.Errorf("rotating %s: %w", r.Path, err)
					}
					continue
				}
				cut = int(min(int64(len(p)), r.MaxSize)) // one line longer than a whole file
			}
			chunk = p[:cut]
		}
		n, err := r.f.Write(chunk)
		r.size += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	keep := r.Keep
	if keep < 1 {
		keep = 1
	}
	os.Remove(fmt.Sprintf("%s.%d", r.Path, keep))
	for i := keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", r.Path, i), fmt.Sprintf("%s.%d", r.Path, i+1))
	}
	if err := os.Rename(r.Path, r.Path+".1"); err != nil && !os.IsNotExist(err) {
		return err
	}
	return r.open()
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// pipeTo returns the write end of a pipe whose bytes are copied into w by a
// goroutine until every holder of the write end has closed it. A child
// process given the *os.File does not make cmd.Wait wait for the copy, so a
// daemon that inherits it cannot block the supervisor.
func pipeTo(w io.Writer, done func()) (*os.File, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		io.Copy(w, pr)
		pr.Close()
		if done != nil {
			done()
		}
	}()
	return pw, nil
}
