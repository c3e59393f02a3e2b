package vars

import "testing"

// BenchmarkCertificateCA measures one self-signed CA: a 3072-bit RSA key dominates.
func BenchmarkCertificateCA(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(Definition{Name: "ca", Type: "certificate", Options: map[string]any{"is_ca": true, "common_name": "ca"}}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCertificateLeaf measures one leaf signed by an existing CA.
func BenchmarkCertificateLeaf(b *testing.B) {
	ca, err := Generate(Definition{Name: "ca", Type: "certificate", Options: map[string]any{"is_ca": true, "common_name": "ca"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	get := func(string) (any, bool) { return ca, true }
	opts := map[string]any{"ca": "ca", "common_name": "leaf", "alternative_names": []any{"a.example.com", "10.0.0.1"}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Generate(Definition{Name: "leaf", Type: "certificate", Options: opts}, get); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSSH(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(Definition{Name: "k", Type: "ssh"}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPassword(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(Definition{Name: "p", Type: "password"}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
