package vars

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// now is the clock certificates are dated with; tests replace it.
var now = time.Now

// generateKey is rsa.GenerateKey; tests may swap in a cache of pre-generated
// keys so that 3072-bit generation does not dominate their run time.
var generateKey = func(bits int) (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, bits)
}

var certOptions = []string{"common_name", "organization", "alternative_names", "is_ca", "ca", "extended_key_usage", "duration"}

type certParams struct {
	commonName   string
	organization string
	altNames     []string
	isCA         bool
	caName       string
	extKeyUsage  []string
	durationDays int
}

func parseCertParams(opts map[string]any) (certParams, error) {
	var p certParams
	if err := checkOptions(opts, certOptions...); err != nil {
		return p, err
	}
	var errs []error
	var err error
	p.commonName, err = stringOption(opts, "common_name")
	errs = append(errs, err)
	p.organization, err = stringOption(opts, "organization")
	errs = append(errs, err)
	p.altNames, err = stringListOption(opts, "alternative_names")
	errs = append(errs, err)
	p.isCA, err = boolOption(opts, "is_ca")
	errs = append(errs, err)
	p.caName, err = stringOption(opts, "ca")
	errs = append(errs, err)
	p.extKeyUsage, err = stringListOption(opts, "extended_key_usage")
	errs = append(errs, err)
	p.durationDays, err = intOption(opts, "duration")
	errs = append(errs, err)
	return p, errors.Join(errs...)
}

func pemEncode(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func generateCertificate(opts map[string]any, getCA func(string) (any, bool)) (map[string]any, error) {
	p, err := parseCertParams(opts)
	if err != nil {
		return nil, err
	}
	if !p.isCA && p.caName == "" {
		return nil, errors.New("missing required option 'ca' (the name of the CA certificate variable that signs it); set is_ca: true for a self-signed CA")
	}
	var extUsages []x509.ExtKeyUsage
	if !p.isCA {
		for _, u := range p.extKeyUsage {
			switch u {
			case "client_auth":
				extUsages = append(extUsages, x509.ExtKeyUsageClientAuth)
			case "server_auth":
				extUsages = append(extUsages, x509.ExtKeyUsageServerAuth)
			default:
				return nil, fmt.Errorf("unsupported extended_key_usage value '%s' (supported: client_auth, server_auth)", u)
			}
		}
		if len(p.extKeyUsage) == 0 {
			extUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}

	var (
		parent    *x509.Certificate
		parentKey crypto.Signer
	)
	if p.caName != "" {
		parent, parentKey, err = loadCA(p.caName, getCA)
		if err != nil {
			return nil, err
		}
	}

	key, err := generateKey(CertificateKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating %d-bit RSA key: %w", CertificateKeyBits, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	start := now()
	days := p.durationDays
	if days <= 0 {
		days = DefaultCertDays
	}
	org := p.organization
	if org == "" {
		org = DefaultOrganization
	}
	skid := sha1.Sum(key.N.Bytes())
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country:      []string{"US"},
			Organization: []string{org},
			CommonName:   p.commonName,
		},
		NotBefore:             start,
		NotAfter:              start.Add(time.Duration(days) * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  p.isCA,
		SubjectKeyId:          skid[:],
	}
	if p.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = extUsages
		for _, n := range p.altNames {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	if parent == nil { // self-signed CA
		parent, parentKey = tmpl, key
	}
	tmpl.AuthorityKeyId = parent.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	caDER := der
	if p.caName != "" {
		caDER = parent.Raw
	}
	return map[string]any{
		"ca":          pemEncode("CERTIFICATE", caDER),
		"certificate": pemEncode("CERTIFICATE", der),
		"private_key": pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)),
	}, nil
}

// loadCA reads the signing CA named by the `ca` option through getCA.
func loadCA(name string, getCA func(string) (any, bool)) (*x509.Certificate, crypto.Signer, error) {
	if getCA == nil {
		return nil, nil, fmt.Errorf("CA '%s': no CA lookup available", name)
	}
	v, ok := getCA(name)
	if !ok || v == nil {
		return nil, nil, fmt.Errorf("expected to find variable '%s' with a certificate (the CA named by option 'ca'); declare it with type certificate and is_ca: true, or give its value", name)
	}
	certPEM, keyPEM, err := certFields(v)
	if err != nil {
		return nil, nil, fmt.Errorf("CA '%s': %w", name, err)
	}
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return nil, nil, fmt.Errorf("CA '%s': certificate is not PEM", name)
	}
	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA '%s': parsing certificate: %w", name, err)
	}
	kblock, _ := pem.Decode([]byte(keyPEM))
	if kblock == nil {
		return nil, nil, fmt.Errorf("CA '%s': private_key is not PEM", name)
	}
	key, err := parsePrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA '%s': parsing private_key: %w", name, err)
	}
	return crt, key, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#1, PKCS#8 or EC private key")
}

// certFields extracts certificate and private_key from a certificate value as
// any vars source may hold it (yaml.v3 or yaml.v2 maps, or string maps).
func certFields(v any) (cert, key string, err error) {
	get := func(k string) (any, bool) { return nil, false }
	switch m := v.(type) {
	case map[string]any:
		get = func(k string) (any, bool) { x, ok := m[k]; return x, ok }
	case map[any]any:
		get = func(k string) (any, bool) { x, ok := m[k]; return x, ok }
	case map[string]string:
		get = func(k string) (any, bool) { x, ok := m[k]; return x, ok }
	default:
		return "", "", fmt.Errorf("expected a map with certificate and private_key, got %T", v)
	}
	c, _ := get("certificate")
	k, _ := get("private_key")
	cert, _ = c.(string)
	key, _ = k.(string)
	if cert == "" || key == "" {
		return "", "", errors.New("value has no certificate and private_key")
	}
	return cert, key, nil
}

func generateRSA(opts map[string]any) (map[string]any, error) {
	key, err := generateKey(RSAKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating %d-bit RSA key: %w", RSAKeyBits, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return map[string]any{
		"private_key": pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)),
		"public_key":  pemEncode("PUBLIC KEY", pub),
	}, nil
}

func generateSSH(opts map[string]any) (map[string]any, error) {
	key, err := generateKey(SSHKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating %d-bit RSA key: %w", SSHKeyBits, err)
	}
	pub, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding ssh public key: %w", err)
	}
	return map[string]any{
		"private_key":            pemEncode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)),
		"public_key":             string(ssh.MarshalAuthorizedKey(pub)),
		"public_key_fingerprint": ssh.FingerprintLegacyMD5(pub),
	}, nil
}
