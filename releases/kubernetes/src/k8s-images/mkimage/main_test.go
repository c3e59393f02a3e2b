package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[h.Name] = b
	}
}

// The archive must be what `docker save` writes and `ctr images import` reads:
// manifest.json naming the config and the layer, the config's diff_id being
// the layer's digest, the layer holding the binary at the entrypoint.
func TestWriteDockerArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "echo")
	payload := []byte("#!/bin/true\nnot really a binary\n")
	require.NoError(t, os.WriteFile(bin, payload, 0o755))
	out := filepath.Join(dir, "echo.tar")
	require.NoError(t, write(bin, "kpaas.local/echo:1", "/echo", 8080, out))

	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	files := readTar(t, f)

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	require.Len(t, manifest, 1)
	assert.Equal(t, []string{"kpaas.local/echo:1"}, manifest[0].RepoTags)
	require.Len(t, manifest[0].Layers, 1)

	cfgBytes := files[manifest[0].Config]
	sum := sha256.Sum256(cfgBytes)
	assert.Equal(t, hex.EncodeToString(sum[:])+".json", manifest[0].Config, "config is named by its digest")
	var cfg struct {
		OS, Architecture string
		Config           struct {
			Entrypoint   []string
			ExposedPorts map[string]any
		}
		RootFS struct {
			Type    string
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	require.NoError(t, json.Unmarshal(cfgBytes, &cfg))
	assert.Equal(t, "linux", cfg.OS)
	assert.Equal(t, "amd64", cfg.Architecture)
	assert.Equal(t, []string{"/echo"}, cfg.Config.Entrypoint)
	assert.Contains(t, cfg.Config.ExposedPorts, "8080/tcp")

	layer := files[manifest[0].Layers[0]]
	lsum := sha256.Sum256(layer)
	assert.Equal(t, []string{"sha256:" + hex.EncodeToString(lsum[:])}, cfg.RootFS.DiffIDs)
	inLayer := readTar(t, bytes.NewReader(layer))
	assert.Equal(t, payload, inLayer["echo"])

	// the same inputs give the same bytes (release fingerprints stay put)
	out2 := filepath.Join(dir, "again.tar")
	require.NoError(t, write(bin, "kpaas.local/echo:1", "/echo", 8080, out2))
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(out2)
	assert.Equal(t, a, b)
}
