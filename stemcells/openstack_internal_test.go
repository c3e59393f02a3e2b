package stemcells

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteMBR(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk")
	require.NoError(t, os.WriteFile(p, make([]byte, 4096), 0o644))
	code := make([]byte, 500) // longer than 440: must be cut, not spill into the table
	for i := range code {
		code[i] = 0xcc
	}
	require.NoError(t, writeMBR(p, code, 2048, 6_289_408))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, byte(0xcc), b[439])
	assert.Equal(t, byte(0), b[440], "boot code stops at 440 bytes")
	e := b[446:462]
	assert.Equal(t, byte(0x80), e[0], "bootable")
	assert.Equal(t, byte(0x83), e[4], "Linux partition")
	assert.Equal(t, uint32(2048), binary.LittleEndian.Uint32(e[8:12]))
	assert.Equal(t, uint32(6_289_408), binary.LittleEndian.Uint32(e[12:16]))
	assert.Equal(t, []byte{0x55, 0xaa}, b[510:512])
	assert.Equal(t, make([]byte, 16), b[462:478], "one partition only")
}

func TestKernelFiles(t *testing.T) {
	root := t.TempDir()
	_, _, err := kernelFiles(root)
	assert.ErrorContains(t, err, "linux-image-cloud-amd64")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "boot"), 0o755))
	for _, f := range []string{"vmlinuz-6.1.0-28-cloud-amd64", "initrd.img-6.1.0-28-cloud-amd64"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, "boot", f), nil, 0o644))
	}
	k, i, err := kernelFiles(root)
	require.NoError(t, err)
	assert.Equal(t, "/boot/vmlinuz-6.1.0-28-cloud-amd64", k)
	assert.Equal(t, "/boot/initrd.img-6.1.0-28-cloud-amd64", i)
}
