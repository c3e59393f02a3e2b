package state

import (
	"regexp"
	"strings"
)

// secretLine matches a YAML line whose key names a secret, and its value.
var secretLine = regexp.MustCompile(`^(\s*(?:-\s+)?)([A-Za-z0-9_.-]*(?i:password|secret|token|private_key|privatekey|credential|api_key|apikey|passphrase)[A-Za-z0-9_.-]*:\s+)(\S.*)$`)

// RedactYAML hides the values of keys that hold secrets (password, secret, token,
// private_key, credential, ...), including multi-line block values, so a diff
// can be shown and logged.
func RedactYAML(text string) string {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if text == "" {
		return ""
	}
	out := make([]string, 0, len(lines))
	blockIndent := -1 // inside a secret's block value: the key's indent
	for _, l := range lines {
		if blockIndent >= 0 {
			if strings.TrimSpace(l) == "" || indent(l) > blockIndent {
				continue
			}
			blockIndent = -1
		}
		m := secretLine.FindStringSubmatch(l)
		if m == nil {
			out = append(out, l)
			continue
		}
		if v := strings.TrimSpace(m[3]); strings.HasPrefix(v, "|") || strings.HasPrefix(v, ">") {
			blockIndent = len(m[1])
		}
		out = append(out, m[1]+m[2]+"<redacted>")
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

func indent(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
