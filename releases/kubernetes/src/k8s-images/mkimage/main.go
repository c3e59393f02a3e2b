// Command mkimage writes a single-layer container image holding one static
// binary as a docker-archive tarball (the `docker save` layout that
// `ctr images import` reads). Its output depends only on its inputs.
//
//	mkimage -binary bin/echo -name kpaas.local/echo:1 -entrypoint /echo -port 8080 -o images/echo.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	var bin, name, entry, out string
	var port int
	flag.StringVar(&bin, "binary", "", "static binary to put in the image")
	flag.StringVar(&name, "name", "", "image reference, e.g. kpaas.local/echo:1")
	flag.StringVar(&entry, "entrypoint", "", "path of the binary inside the image (default /<basename>)")
	flag.IntVar(&port, "port", 0, "port the image exposes (0: none)")
	flag.StringVar(&out, "o", "", "output tarball")
	flag.Parse()
	if bin == "" || name == "" || out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkimage -binary FILE -name REF [-entrypoint PATH] [-port N] -o OUT.tar")
		os.Exit(2)
	}
	if entry == "" {
		entry = "/" + filepath.Base(bin)
	}
	if err := write(bin, name, entry, port, out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

var epoch = time.Unix(0, 0).UTC()

func write(bin, name, entry string, port int, out string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch}); err != nil {
		return err
	}
	if err := lw.WriteHeader(&tar.Header{Name: entry[1:], Mode: 0o755, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	if _, err := lw.Write(data); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerHex := hex.EncodeToString(layerSum[:])

	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{entry},
			"Env":        []string{"PATH=/"},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerHex}},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "kpaas mkimage " + filepath.Base(bin)}},
	}
	if port > 0 {
		cfg["config"].(map[string]any)["ExposedPorts"] = map[string]any{fmt.Sprintf("%d/tcp", port): map[string]any{}}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{name},
		"Layers":   []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return err
	}

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	files := []struct {
		name string
		data []byte
	}{{cfgName, cfgJSON}, {layerHex + "/layer.tar", layer.Bytes()}, {"manifest.json", manifest}}
	if err := tw.WriteHeader(&tar.Header{Name: layerHex + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
		return err
	}
	for _, x := range files {
		if err := tw.WriteHeader(&tar.Header{Name: x.name, Mode: 0o644, Size: int64(len(x.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(x.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
