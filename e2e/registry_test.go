package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
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

// checkImagePushPull pushes a one-layer image to repo as tags v1 and v2,
// pulls its manifest back by digest and by tag and its blobs by digest, and
// lists the tags.
func checkImagePushPull(t *testing.T, rc *registryClient, repo string) {
	t.Helper()
	layer, config, err := testImage("pushed by a kpaas test\n")
	require.NoError(t, err)
	md, manifest, err := rc.pushImage(repo, "v1", layer, config)
	require.NoError(t, err)
	assert.Equal(t, digestOf(manifest), md, "the registry names the manifest by its digest")
	got, ctype, err := rc.manifest(repo, md)
	require.NoError(t, err)
	assert.Equal(t, mediaManifest, ctype)
	assert.Equal(t, string(manifest), string(got), "the manifest pulled by digest is the one pushed")
	got, _, err = rc.manifest(repo, "v1")
	require.NoError(t, err)
	assert.Equal(t, string(manifest), string(got), "and by tag")
	for what, b := range map[string][]byte{"layer": layer, "config": config} {
		pulled, err := rc.blob(repo, digestOf(b))
		require.NoError(t, err, what)
		assert.True(t, bytes.Equal(b, pulled), "the %s pulled back is the one pushed", what)
	}
	_, err = rc.blob(repo, digestOf([]byte("never pushed")))
	assert.ErrorContains(t, err, "404", "a blob never pushed is not there")
	_, _, err = rc.pushImage(repo, "v2", layer, config)
	require.NoError(t, err)
	tags, err := rc.tags(repo)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"v1", "v2"}, tags)
}

// TestRegistryClientAgainstDebianRegistry runs the registry client against
// the Distribution registry the registry release packages (Debian's
// docker-registry, from releases/registry/blobs after `make releases`) on
// loopback, with TLS from a CA made here and htpasswd auth: the same push and
// pull as the quickstart test, without VMs.
func TestRegistryClientAgainstDebianRegistry(t *testing.T) {
	debs, _ := filepath.Glob(filepath.Join(moduleDir, "releases", "registry", "blobs", "registry", "docker-registry_*.deb"))
	if len(debs) == 0 {
		t.Skip("no docker-registry .deb in releases/registry/blobs (run `make releases`)")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found (a Debian host)")
	}
	dir := t.TempDir()
	out, err := exec.Command("dpkg-deb", "-x", debs[0], filepath.Join(dir, "deb")).CombinedOutput()
	require.NoError(t, err, string(out))

	caPEM, certPEM, keyPEM := testTLS(t, "127.0.0.1")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	files := map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "htpasswd": []byte("admin:" + string(hash) + "\n")}
	for n, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o600))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: %s/store}}
http: {addr: "%s", tls: {certificate: %s/tls.crt, key: %s/tls.key}}
auth: {htpasswd: {realm: test, path: %s/htpasswd}}
`, dir, addr, dir, dir, dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600))
	var log bytes.Buffer
	cmd := exec.Command(filepath.Join(dir, "deb", "usr", "bin", "docker-registry"), "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "the registry never listened: %s", &log)

	base := "https://" + addr
	untrusted, err := newRegistryClient(base, "admin", "s3cret", nil)
	require.NoError(t, err)
	assert.ErrorContains(t, untrusted.ping(), "certificate", "only the CA made here is trusted")
	wrong, err := newRegistryClient(base, "admin", "wrong", caPEM)
	require.NoError(t, err)
	assert.ErrorContains(t, wrong.ping(), "401")
	rc, err := newRegistryClient(base, "admin", "s3cret", caPEM)
	require.NoError(t, err)
	require.NoError(t, rc.ping())
	checkImagePushPull(t, rc, "kpaas/hello")
}

// testTLS makes a CA and a server certificate for ip, PEM encoded.
func testTLS(t *testing.T, ip string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
