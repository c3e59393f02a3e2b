package ui

import (
	"bytes"
	"io"
	"sync"
)

// PrefixWriter writes every line to W with Prefix in front; lines from
// several PrefixWriters sharing one Mutex never interleave. Call Flush at the
// end to write a last line without a newline.
type PrefixWriter struct {
	W      io.Writer
	Prefix string
	Mu     *sync.Mutex
	buf    []byte
}

func (p *PrefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if err := p.emit(p.buf[:i+1]); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *PrefixWriter) emit(line []byte) error {
	if p.Mu != nil {
		p.Mu.Lock()
		defer p.Mu.Unlock()
	}
	out := make([]byte, 0, len(p.Prefix)+len(line))
	out = append(append(out, p.Prefix...), line...)
	_, err := p.W.Write(out)
	return err
}

// Flush writes what remains (a last line without newline), adding the newline.
func (p *PrefixWriter) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	line := append(p.buf, '\n')
	p.buf = nil
	return p.emit(line)
}
