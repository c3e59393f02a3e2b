package vsphere_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/cpi/vsphere"
	"github.com/kpaas/kpaas/cpi/vsphere/vspheretest"
)

func otherCA(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestTLSVerification(t *testing.T) {
	s := vspheretest.StartTLS(t)
	require.True(t, strings.HasPrefix(s.Config.Host, "https://"))
	_, err := s.Driver.HasVM(ctx, "vm-x")
	require.NoError(t, err, "vCenter's certificate verifies against ca_cert")

	open := func(mod func(c *vsphere.Config)) error {
		c := s.Config
		mod(&c)
		d, err := vsphere.New(c, nil)
		require.NoError(t, err)
		_, err = d.HasVM(ctx, "vm-x")
		return err
	}
	err = open(func(c *vsphere.Config) { c.ConnectionOptions.CACert = otherCA(t) })
	require.Error(t, err, "a certificate not signed by ca_cert is refused")
	assert.Contains(t, err.Error(), "certificate")

	yes, no := true, false
	assert.NoError(t, open(func(c *vsphere.Config) { c.ConnectionOptions.CACert = otherCA(t); c.Insecure = &yes }), "insecure: true skips verification")
	assert.NoError(t, open(func(c *vsphere.Config) { c.ConnectionOptions.CACert = "" }), "no ca_cert: not verified, as BOSH's CPI")
	err = open(func(c *vsphere.Config) { c.ConnectionOptions.CACert = ""; c.Insecure = &no })
	require.Error(t, err, "insecure: false without ca_cert verifies against the system roots")
}
