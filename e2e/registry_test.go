package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// registryClient speaks the Docker registry HTTP API v2 as `docker push` and
// `docker pull` do, with basic auth: enough to push an image (layer blob,
// config blob, manifest) and pull it back. Only net/http.
type registryClient struct {
	base       string // https://host:port
	user, pass string
	hc         *http.Client
}

// Media types of a Docker image manifest (schema 2).
const (
	mediaManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfig   = "application/vnd.docker.container.image.v1+json"
	mediaLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// newRegistryClient trusts only caPEM (nil: the system's roots).
func newRegistryClient(base, user, pass string, caPEM []byte) (*registryClient, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("no certificate in the CA PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &registryClient{base: strings.TrimSuffix(base, "/"), user: user, pass: pass, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// do sends a request with basic auth and returns the response with its body
// read; a status not in want is an error naming the request and the body.
func (c *registryClient) do(method, u string, header http.Header, body []byte, want ...int) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.SetBasicAuth(c.user, c.pass)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, b, nil
		}
	}
	return resp, b, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(b)))
}

// ping is GET /v2/ (200 when the credentials are good).
func (c *registryClient) ping() error {
	_, _, err := c.do(http.MethodGet, c.base+"/v2/", nil, nil, http.StatusOK)
	return err
}

// pushBlob uploads b to repo (POST an upload, PUT it whole with its digest),
// unless the registry has it already; it returns the digest.
func (c *registryClient) pushBlob(repo string, b []byte) (string, error) {
	d := digestOf(b)
	if resp, _, err := c.do(http.MethodHead, c.base+"/v2/"+repo+"/blobs/"+d, nil, nil, http.StatusOK, http.StatusNotFound); err != nil {
		return "", err
	} else if resp.StatusCode == http.StatusOK {
		return d, nil
	}
	resp, _, err := c.do(http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	loc, err := resp.Location()
	if err != nil {
		return "", fmt.Errorf("upload of %s: %w", d, err)
	}
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, _, err = c.do(http.MethodPut, loc.String(), h, b, http.StatusCreated)
	if err != nil {
		return "", err
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d {
		return "", fmt.Errorf("the registry stored %s as %s", d, got)
	}
	return d, nil
}

// pushImage pushes a one-layer image (the layer's blobs, its config, the
// manifest tagged tag) and returns the manifest's digest.
func (c *registryClient) pushImage(repo, tag string, layer, config []byte) (string, []byte, error) {
	ld, err := c.pushBlob(repo, layer)
	if err != nil {
		return "", nil, fmt.Errorf("pushing the layer: %w", err)
	}
	cd, err := c.pushBlob(repo, config)
	if err != nil {
		return "", nil, fmt.Errorf("pushing the config: %w", err)
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Size      int    `json:"size"`
		Digest    string `json:"digest"`
	}
	manifest, err := json.Marshal(struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, mediaManifest, desc{mediaConfig, len(config), cd}, []desc{{mediaLayer, len(layer), ld}}})
	if err != nil {
		return "", nil, err
	}
	resp, _, err := c.do(http.MethodPut, c.base+"/v2/"+repo+"/manifests/"+tag, http.Header{"Content-Type": {mediaManifest}}, manifest, http.StatusCreated)
	if err != nil {
		return "", nil, fmt.Errorf("pushing the manifest: %w", err)
	}
	return resp.Header.Get("Docker-Content-Digest"), manifest, nil
}

// manifest fetches repo's manifest ref (a tag or a digest) as schema 2.
func (c *registryClient) manifest(repo, ref string) ([]byte, string, error) {
	resp, b, err := c.do(http.MethodGet, c.base+"/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {mediaManifest}}, nil, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	return b, resp.Header.Get("Content-Type"), nil
}

func (c *registryClient) blob(repo, digest string) ([]byte, error) {
	_, b, err := c.do(http.MethodGet, c.base+"/v2/"+repo+"/blobs/"+digest, nil, nil, http.StatusOK)
	return b, err
}

func (c *registryClient) tags(repo string) ([]string, error) {
	_, b, err := c.do(http.MethodGet, c.base+"/v2/"+repo+"/tags/list", nil, nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var l struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("tags of %s: %w", repo, err)
	}
	return l.Tags, nil
}

// testImage is a one-file image: its gzipped layer and its config (whose
// diff_id is the digest of the uncompressed layer, as docker computes it).
func testImage(content string) (layer, config []byte, err error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		return nil, nil, err
	}
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	config, err = json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"cat", "/hello.txt"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(tarBuf.Bytes())}},
	})
	return gz.Bytes(), config, err
}
