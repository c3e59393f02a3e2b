// Package vars generates the values of declared manifest `variables` the way the
// BOSH CLI does for `--vars-store` (its vendored cloudfoundry/config-server
// generators): password, certificate (CA and leaf), rsa and ssh.
//
// It owns only generation: where values are stored, looked up and written is the
// business of pkg/interpolate and pkg/state. It must not import either, nor do any
// I/O other than reading crypto/rand.
package vars

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// Definition is one entry of a manifest's `variables` list.
// Options nested maps are map[string]any (as decoded by yaml.v3), although
// map[any]any (yaml.v2) is accepted too.
type Definition struct {
	Name    string
	Type    string
	Options map[string]any
}

// ErrUnsupportedType is wrapped by the error Generate returns for a type the
// BOSH CLI's vars store cannot generate (user, value, json, ...).
var ErrUnsupportedType = errors.New("unsupported variable type")

// Supported lists the variable types Generate knows, in the order the docs give them.
var Supported = []string{"password", "certificate", "rsa", "ssh"}

// Key sizes and defaults, as the BOSH CLI's generators use them.
const (
	DefaultPasswordLength = 20
	CertificateKeyBits    = 3072
	RSAKeyBits            = 2048
	SSHKeyBits            = 2048
	DefaultCertDays       = 365
	DefaultOrganization   = "Cloud Foundry"
)

// FieldOrder gives the order in which the BOSH CLI writes the fields of a freshly
// generated value of type typ (its Go struct field order): a vars store written
// right after generating a value keeps this order for that value, while values
// read back from the file are emitted with sorted keys. Nil for scalar types.
func FieldOrder(typ string) []string {
	switch typ {
	case "certificate":
		return []string{"certificate", "private_key", "ca"}
	case "rsa":
		return []string{"private_key", "public_key"}
	case "ssh":
		return []string{"private_key", "public_key", "public_key_fingerprint"}
	}
	return nil
}

// Generate creates a new value for d. getCA returns the current value of another
// variable (a certificate map with `certificate` and `private_key`), used when a
// certificate names its signing CA with the `ca` option; it may itself generate
// that CA. It is not called for other types and may be nil when no certificate
// with `ca` is generated.
func Generate(d Definition, getCA func(name string) (any, bool)) (any, error) {
	var (
		v   any
		err error
	)
	switch d.Type {
	case "password":
		v, err = generatePassword(d.Options)
	case "certificate":
		v, err = generateCertificate(d.Options, getCA)
	case "rsa":
		v, err = generateRSA(d.Options)
	case "ssh":
		v, err = generateSSH(d.Options)
	case "":
		return nil, fmt.Errorf("generating variable '%s': no type given (one of %s): %w",
			d.Name, strings.Join(Supported, ", "), ErrUnsupportedType)
	default:
		return nil, fmt.Errorf("generating variable '%s': type '%s' cannot be generated (only %s can; give its value with -v, -l or --var-file): %w",
			d.Name, d.Type, strings.Join(Supported, ", "), ErrUnsupportedType)
	}
	if err != nil {
		return nil, fmt.Errorf("generating variable '%s' (type %s): %w", d.Name, d.Type, err)
	}
	return v, nil
}

// passwordChars is config-server's alphabet: lower-case letters and digits.
const passwordChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func generatePassword(opts map[string]any) (string, error) {
	if err := checkOptions(opts, "length"); err != nil {
		return "", err
	}
	length, err := intOption(opts, "length")
	if err != nil {
		return "", err
	}
	if length == 0 {
		length = DefaultPasswordLength
	}
	if length < 0 {
		return "", fmt.Errorf("option length: %d is negative", length)
	}
	max := big.NewInt(int64(len(passwordChars)))
	b := make([]byte, length)
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("reading random bytes: %w", err)
		}
		b[i] = passwordChars[n.Int64()]
	}
	return string(b), nil
}

// checkOptions refuses option keys the generator does not know, as
// config-server does ("Unsupported parameter 'x'").
func checkOptions(opts map[string]any, supported ...string) error {
	var unknown []string
	for k := range opts {
		found := false
		for _, s := range supported {
			if k == s {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("unsupported option(s) %s (supported: %s)",
		quoteList(unknown), strings.Join(supported, ", "))
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, ", ")
}

// intOption reads an integer option; absent or null gives 0. Like yaml.v2
// decoding into an int field, a string is refused.
func intOption(opts map[string]any, key string) (int, error) {
	v, ok := opts[key]
	if !ok || v == nil {
		return 0, nil
	}
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case int32:
		return int(n), nil
	case uint64:
		return int(n), nil
	case uint:
		return int(n), nil
	case float64:
		if n == float64(int(n)) {
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("option %s: expected an integer, got %T %v", key, v, v)
}

func boolOption(opts map[string]any, key string) (bool, error) {
	v, ok := opts[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("option %s: expected true or false, got %T %v", key, v, v)
	}
	return b, nil
}

// stringOption reads a string option. Ints are accepted and formatted, as
// yaml.v2 does when decoding a number into a string field (common_name: 10.0.0.1
// is a string anyway, but `common_name: 1234` is legal).
func stringOption(opts map[string]any, key string) (string, error) {
	v, ok := opts[key]
	if !ok || v == nil {
		return "", nil
	}
	switch s := v.(type) {
	case string:
		return s, nil
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(s), nil
	}
	return "", fmt.Errorf("option %s: expected a string, got %T", key, v)
}

func stringListOption(opts map[string]any, key string) ([]string, error) {
	v, ok := opts[key]
	if !ok || v == nil {
		return nil, nil
	}
	var items []any
	switch l := v.(type) {
	case []any:
		items = l
	case []string:
		return l, nil
	default:
		return nil, fmt.Errorf("option %s: expected a list of strings, got %T", key, v)
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := stringOption(map[string]any{key: it}, key)
		if err != nil {
			return nil, fmt.Errorf("option %s[%d]: expected a string, got %T", key, i, it)
		}
		out = append(out, s)
	}
	return out, nil
}
