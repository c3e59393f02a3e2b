package ui

import (
	"bytes"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	a := &PrefixWriter{W: &out, Prefix: "api/0: ", Mu: &mu}
	b := &PrefixWriter{W: &out, Prefix: "api/1: ", Mu: &mu}
	a.Write([]byte("one\ntw"))
	b.Write([]byte("x\n"))
	a.Write([]byte("o\nthree"))
	assert.Equal(t, "api/0: one\napi/1: x\napi/0: two\n", out.String(), "partial lines wait for their end")
	a.Flush()
	b.Flush()
	assert.Equal(t, "api/0: one\napi/1: x\napi/0: two\napi/0: three\n", out.String())
}
