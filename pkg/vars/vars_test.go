package vars

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// fastKeys replaces key generation with 1024-bit keys for the test and records
// the sizes the generators asked for, so tests stay fast while still checking
// that certificates ask for 3072 bits and rsa/ssh for 2048.
func fastKeys(t *testing.T) *[]int {
	t.Helper()
	var asked []int
	orig := generateKey
	generateKey = func(bits int) (*rsa.PrivateKey, error) {
		asked = append(asked, bits)
		return rsa.GenerateKey(rand.Reader, 1024)
	}
	t.Cleanup(func() { generateKey = orig })
	return &asked
}

func decodeCert(t *testing.T, s any) *x509.Certificate {
	t.Helper()
	str, ok := s.(string)
	require.True(t, ok, "expected a string, got %T", s)
	require.True(t, strings.HasSuffix(str, "-----END CERTIFICATE-----\n"), "PEM must end with a newline: %q", str[max(0, len(str)-40):])
	b, rest := pem.Decode([]byte(str))
	require.NotNil(t, b)
	require.Empty(t, rest)
	require.Equal(t, "CERTIFICATE", b.Type)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func decodeKey(t *testing.T, s any) *rsa.PrivateKey {
	t.Helper()
	str, ok := s.(string)
	require.True(t, ok)
	b, rest := pem.Decode([]byte(str))
	require.NotNil(t, b)
	require.Empty(t, rest)
	require.Equal(t, "RSA PRIVATE KEY", b.Type, "BOSH emits PKCS#1 keys")
	k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
	require.NoError(t, err)
	return k
}

func TestPassword(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]+$`)
	for _, tc := range []struct {
		opts map[string]any
		want int
	}{
		{nil, 20},
		{map[string]any{}, 20},
		{map[string]any{"length": 32}, 32},
		{map[string]any{"length": int64(5)}, 5},
		{map[string]any{"length": uint64(64)}, 64},
		{map[string]any{"length": 0}, 20},
		{map[string]any{"length": nil}, 20},
	} {
		v, err := Generate(Definition{Name: "p", Type: "password", Options: tc.opts}, nil)
		require.NoError(t, err)
		s, ok := v.(string)
		require.True(t, ok, "password must be a string, got %T", v)
		assert.Len(t, s, tc.want, "options %v", tc.opts)
		assert.Regexp(t, re, s)
	}
}

func TestPasswordsDifferAndUseTheWholeAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	prev := ""
	for i := 0; i < 200; i++ {
		v, err := Generate(Definition{Name: "p", Type: "password"}, nil)
		require.NoError(t, err)
		s := v.(string)
		require.NotEqual(t, prev, s)
		prev = s
		for _, r := range s {
			seen[r] = true
		}
	}
	// 4000 draws from 36 symbols: missing one has probability ~36*(35/36)^4000 ≈ 0.
	assert.Len(t, seen, 36)
}

func TestPasswordBadOptions(t *testing.T) {
	for _, opts := range []map[string]any{
		{"length": "20"},
		{"length": -3},
		{"size": 20},
	} {
		_, err := Generate(Definition{Name: "admin_password", Type: "password", Options: opts}, nil)
		require.Error(t, err, "options %v", opts)
		assert.Contains(t, err.Error(), "admin_password")
		assert.NotErrorIs(t, err, ErrUnsupportedType)
	}
}

func TestUnsupportedTypes(t *testing.T) {
	for _, typ := range []string{"user", "value", "json", "Password", ""} {
		_, err := Generate(Definition{Name: "creds", Type: typ}, nil)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrUnsupportedType, typ)
		assert.Contains(t, err.Error(), "'creds'")
		if typ != "" {
			assert.Contains(t, err.Error(), "'"+typ+"'")
		}
	}
}

// store is a tiny vars store: getCA looks up what was generated before.
type store map[string]any

func (s store) gen(t *testing.T, name, typ string, opts map[string]any) map[string]any {
	t.Helper()
	v, err := Generate(Definition{Name: name, Type: typ, Options: opts}, func(n string) (any, bool) {
		x, ok := s[n]
		return x, ok
	})
	require.NoError(t, err)
	s[name] = v
	m, ok := v.(map[string]any)
	require.True(t, ok, "%s: expected map[string]any, got %T", name, v)
	return m
}

func TestCertificateChain(t *testing.T) {
	asked := fastKeys(t)
	fixed := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return fixed }
	defer func() { now = time.Now }()

	s := store{}
	ca := s.gen(t, "default_ca", "certificate", map[string]any{"is_ca": true, "common_name": "ca"})
	inter := s.gen(t, "inter_ca", "certificate", map[string]any{"is_ca": true, "ca": "default_ca", "common_name": "intermediate", "organization": "K-PaaS"})
	leaf := s.gen(t, "director_ssl", "certificate", map[string]any{
		"ca":                 "default_ca",
		"common_name":        "10.0.1.6",
		"alternative_names":  []any{"10.0.1.6", "director.example.com", "*.bosh"},
		"extended_key_usage": []any{"client_auth", "server_auth"},
		"duration":           30,
	})
	client := s.gen(t, "nats_client", "certificate", map[string]any{"ca": "inter_ca", "common_name": "client"})

	for _, m := range []map[string]any{ca, inter, leaf, client} {
		assert.ElementsMatch(t, []string{"ca", "certificate", "private_key"}, keys(m))
	}
	assert.Equal(t, []int{3072, 3072, 3072, 3072}, *asked, "certificates use 3072-bit keys as the BOSH CLI")

	caCert := decodeCert(t, ca["certificate"])
	assert.Equal(t, ca["certificate"], ca["ca"], "a root CA's ca field is its own certificate")
	assert.True(t, caCert.IsCA)
	assert.True(t, caCert.BasicConstraintsValid)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, caCert.KeyUsage)
	assert.Equal(t, "ca", caCert.Subject.CommonName)
	assert.Equal(t, []string{"Cloud Foundry"}, caCert.Subject.Organization)
	assert.Equal(t, []string{"US"}, caCert.Subject.Country)
	assert.Equal(t, caCert.Subject.String(), caCert.Issuer.String())
	assert.Equal(t, caCert.SubjectKeyId, caCert.AuthorityKeyId)
	assert.Equal(t, fixed, caCert.NotBefore)
	assert.Equal(t, fixed.Add(365*24*time.Hour), caCert.NotAfter)
	assert.True(t, decodeKey(t, ca["private_key"]).PublicKey.Equal(caCert.PublicKey))

	interCert := decodeCert(t, inter["certificate"])
	assert.True(t, interCert.IsCA)
	assert.Equal(t, ca["certificate"], inter["ca"], "an intermediate's ca field is its signer")
	assert.Equal(t, []string{"K-PaaS"}, interCert.Subject.Organization)
	assert.Equal(t, caCert.SubjectKeyId, interCert.AuthorityKeyId)
	require.NoError(t, interCert.CheckSignatureFrom(caCert))

	leafCert := decodeCert(t, leaf["certificate"])
	assert.Equal(t, ca["certificate"], leaf["ca"])
	assert.False(t, leafCert.IsCA)
	assert.True(t, leafCert.BasicConstraintsValid)
	assert.Equal(t, x509.KeyUsageKeyEncipherment|x509.KeyUsageDigitalSignature, leafCert.KeyUsage)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, leafCert.ExtKeyUsage)
	assert.Equal(t, []string{"director.example.com", "*.bosh"}, leafCert.DNSNames)
	require.Len(t, leafCert.IPAddresses, 1)
	assert.True(t, leafCert.IPAddresses[0].Equal(net.ParseIP("10.0.1.6")))
	assert.Equal(t, "10.0.1.6", leafCert.Subject.CommonName)
	assert.Equal(t, fixed.Add(30*24*time.Hour), leafCert.NotAfter)
	assert.Equal(t, caCert.SubjectKeyId, leafCert.AuthorityKeyId)
	assert.True(t, decodeKey(t, leaf["private_key"]).PublicKey.Equal(leafCert.PublicKey))

	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	at := fixed.Add(time.Hour)
	_, err := leafCert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "director.example.com", CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err)
	_, err = leafCert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.1.6", CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	_, err = leafCert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com", CurrentTime: at})
	require.Error(t, err, "a name outside the SANs must not verify")
	_, err = leafCert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: fixed.Add(31 * 24 * time.Hour)})
	require.Error(t, err, "expired after duration days")

	clientCert := decodeCert(t, client["certificate"])
	assert.Equal(t, inter["certificate"], client["ca"])
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, clientCert.ExtKeyUsage, "server_auth is the default")
	inters := x509.NewCertPool()
	inters.AddCert(interCert)
	chains, err := clientCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: at})
	require.NoError(t, err)
	require.Len(t, chains, 1)
	assert.Len(t, chains[0], 3)

	// Another root does not verify the leaf.
	other := s.gen(t, "other_ca", "certificate", map[string]any{"is_ca": true, "common_name": "ca"})
	otherPool := x509.NewCertPool()
	otherPool.AddCert(decodeCert(t, other["certificate"]))
	_, err = leafCert.Verify(x509.VerifyOptions{Roots: otherPool, CurrentTime: at})
	require.Error(t, err)
}

func TestCertificateCAFromYAMLv2Map(t *testing.T) {
	fastKeys(t)
	s := store{}
	ca := s.gen(t, "ca", "certificate", map[string]any{"is_ca": true, "common_name": "ca"})
	// A CA read from a vars file by yaml.v2 is a map[interface{}]interface{}.
	v2 := map[any]any{"certificate": ca["certificate"], "private_key": ca["private_key"]}
	v, err := Generate(Definition{Name: "leaf", Type: "certificate", Options: map[string]any{"ca": "ca", "common_name": "x"}},
		func(string) (any, bool) { return v2, true })
	require.NoError(t, err)
	leaf := decodeCert(t, v.(map[string]any)["certificate"])
	require.NoError(t, leaf.CheckSignatureFrom(decodeCert(t, ca["certificate"])))
}

func TestCertificateErrors(t *testing.T) {
	fastKeys(t)
	s := store{}
	s.gen(t, "ca", "certificate", map[string]any{"is_ca": true, "common_name": "ca"})
	s["not_a_cert"] = "just a string"
	s["broken_cert"] = map[string]any{"certificate": "nope", "private_key": "nope"}
	get := func(n string) (any, bool) { x, ok := s[n]; return x, ok }
	for _, tc := range []struct {
		name string
		opts map[string]any
		want string
	}{
		{"leaf without ca", map[string]any{"common_name": "x"}, "missing required option 'ca'"},
		{"unknown ca", map[string]any{"common_name": "x", "ca": "nope_ca"}, "'nope_ca'"},
		{"ca is not a cert", map[string]any{"common_name": "x", "ca": "not_a_cert"}, "not_a_cert"},
		{"ca is not PEM", map[string]any{"common_name": "x", "ca": "broken_cert"}, "not PEM"},
		{"bad eku", map[string]any{"common_name": "x", "ca": "ca", "extended_key_usage": []any{"code_signing"}}, "code_signing"},
		{"unknown option", map[string]any{"common_name": "x", "ca": "ca", "key_usage": []any{"digital_signature"}}, "'key_usage'"},
		{"is_ca not bool", map[string]any{"common_name": "x", "is_ca": "yes"}, "is_ca"},
		{"alt names not list", map[string]any{"common_name": "x", "ca": "ca", "alternative_names": "a.b"}, "alternative_names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(Definition{Name: "my_cert", Type: "certificate", Options: tc.opts}, get)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "my_cert")
			assert.Contains(t, err.Error(), tc.want)
			assert.NotErrorIs(t, err, ErrUnsupportedType)
		})
	}
	_, err := Generate(Definition{Name: "leaf", Type: "certificate", Options: map[string]any{"ca": "ca"}}, nil)
	require.Error(t, err, "a nil getCA with a ca option is an error, not a panic")
}

func TestRSA(t *testing.T) {
	v, err := Generate(Definition{Name: "uaa_jwt", Type: "rsa"}, nil)
	require.NoError(t, err)
	m := v.(map[string]any)
	assert.ElementsMatch(t, []string{"private_key", "public_key"}, keys(m))
	priv := decodeKey(t, m["private_key"])
	assert.Equal(t, 2048, priv.N.BitLen())
	pubPEM := m["public_key"].(string)
	assert.True(t, strings.HasPrefix(pubPEM, "-----BEGIN PUBLIC KEY-----\n"))
	assert.True(t, strings.HasSuffix(pubPEM, "-----END PUBLIC KEY-----\n"))
	b, _ := pem.Decode([]byte(pubPEM))
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	require.NoError(t, err)
	assert.True(t, priv.PublicKey.Equal(pub))
}

func TestSSH(t *testing.T) {
	v, err := Generate(Definition{Name: "jumpbox_ssh", Type: "ssh"}, nil)
	require.NoError(t, err)
	m := v.(map[string]any)
	assert.ElementsMatch(t, []string{"private_key", "public_key", "public_key_fingerprint"}, keys(m))
	priv := decodeKey(t, m["private_key"])
	assert.Equal(t, 2048, priv.N.BitLen())

	pubLine := m["public_key"].(string)
	assert.True(t, strings.HasPrefix(pubLine, "ssh-rsa "))
	assert.True(t, strings.HasSuffix(pubLine, "\n"), "authorized_keys line with its newline, as the CLI stores it")
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(pubLine))
	require.NoError(t, err)
	assert.Empty(t, rest)
	want, err := ssh.NewPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	assert.Equal(t, want.Marshal(), pub.Marshal(), "public key matches the private key")

	fp := m["public_key_fingerprint"].(string)
	assert.Equal(t, ssh.FingerprintLegacyMD5(pub), fp)
	assert.Regexp(t, `^[0-9a-f]{2}(:[0-9a-f]{2}){15}$`, fp)
	// And computed independently of x/crypto's helper:
	sum := md5.Sum(pub.Marshal())
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	assert.Equal(t, strings.Join(parts, ":"), fp)

	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	sig, err := signer.Sign(rand.Reader, []byte("hello"))
	require.NoError(t, err)
	require.NoError(t, pub.Verify([]byte("hello"), sig))
}

func TestFieldOrder(t *testing.T) {
	fastKeys(t)
	s := store{}
	opts := map[string]map[string]any{"certificate": {"is_ca": true, "common_name": "x"}}
	for _, typ := range []string{"certificate", "rsa", "ssh"} {
		m := s.gen(t, typ, typ, opts[typ])
		assert.ElementsMatch(t, keys(m), FieldOrder(typ), typ)
	}
	assert.Nil(t, FieldOrder("password"))
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCertificateRealKeys runs the real 3072-bit generation once (no fastKeys).
func TestCertificateRealKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("3072-bit key generation skipped in -short")
	}
	s := store{}
	ca := s.gen(t, "ca", "certificate", map[string]any{"is_ca": true, "common_name": "ca"})
	leaf := s.gen(t, "leaf", "certificate", map[string]any{"ca": "ca", "common_name": "leaf"})
	for _, m := range []map[string]any{ca, leaf} {
		c := decodeCert(t, m["certificate"])
		assert.Equal(t, 3072, c.PublicKey.(*rsa.PublicKey).N.BitLen())
		assert.Equal(t, x509.SHA256WithRSA, c.SignatureAlgorithm)
	}
	require.NoError(t, decodeCert(t, leaf["certificate"]).CheckSignatureFrom(decodeCert(t, ca["certificate"])))
}
