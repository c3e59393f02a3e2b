package erb

import (
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const typingYAML = `
float_one: 1.0
float_exp: 1.5e+3
float_dot: 1.
float_lead: .5
not_float_exp: 1e3
int: 42
neg: -17
octal: 012
octal_mode: 0644
hex: 0x1F
bin: 0b101
under: 1_000
comma: 1,000
sexa: 12:30
sexa3: 1:02:03
sexa_float: 1:30.5
big: 123456789012345678901234567890
on: on
On: On
yes: yes
off: off
NO: NO
y: y
n: n
true_str: "true"
quoted_int: '012'
null1: ~
null2: null
null3: NULL
null4:
empty_str: ""
inf: .inf
neg_inf: -.inf
ip: 10.0.0.1
version: 1.2.3
date: 2001-12-14
text: hello world
block: |
  line one
  line 2
list: [1, 1.0, "1", on, ~, 0o17]
nested: {a: {b: 2.50}}
anchors:
  base: &base {x: 1, y: 2.0}
  merged:
    <<: *base
    y: 3
`

// DecodeYAML11 and MarshalContext type values exactly as ruby's own YAML.load
// does, compared in ruby itself (class and value, through inspect).
func TestYAML11TypingMatchesPsych(t *testing.T) {
	needRuby(t)
	v, err := DecodeYAML11([]byte(typingYAML))
	require.NoError(t, err)
	js, err := MarshalContext(v)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "doc.yml"), []byte(typingYAML), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "doc.json"), js, 0o600))
	script := `require "yaml"; require "json"; require "date"
y = YAML.load(File.read(ARGV[0]), aliases: true, permitted_classes: [Date])
y.delete("date") # Psych makes a Date; kpaas keeps the string (templates get JSON-safe values)
j = JSON.parse(File.read(ARGV[1]), allow_nan: true)
j.delete("date")
deep = ->(v) { case v when Hash then v.map { |k, x| [k.to_s, deep.(x)] }.sort.to_s when Array then "[" + v.map { |x| deep.(x) }.join(",") + "]" else "#{v.class}:#{v.inspect}" end }
a, b = deep.(y), deep.(j)
if a == b then puts "same" else puts "psych: #{a}"; puts "kpaas: #{b}" end`
	out, err := exec.Command("ruby", "-e", script, filepath.Join(dir, "doc.yml"), filepath.Join(dir, "doc.json")).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "same\n", string(out))

	// and in Go, independently of ruby
	m := v.(map[string]any)
	assert.Equal(t, 1.0, m["float_one"])
	assert.Equal(t, "1e3", m["not_float_exp"])
	assert.Equal(t, 10, m["octal"])
	assert.Equal(t, 420, m["octal_mode"])
	assert.Equal(t, 45000, m["sexa"])
	assert.Equal(t, true, m["true"], "on: on is true: true, as in Psych")
	assert.Equal(t, false, m["false"])
	assert.Equal(t, "y", m["y"])
	assert.Equal(t, "012", m["quoted_int"])
	assert.Nil(t, m["null3"])
	assert.True(t, math.IsInf(m["neg_inf"].(float64), -1))
	assert.Equal(t, "123456789012345678901234567890", m["big"].(*big.Int).String())
	assert.Equal(t, map[string]any{"x": 1, "y": 3}, m["anchors"].(map[string]any)["merged"])
}

func TestMarshalContextKeepsFloats(t *testing.T) {
	js, err := MarshalContext(map[string]any{"b": 1.0, "a": []any{2.0, 1e21, 0.5, int64(3)}, "c": map[any]any{"z": nil}})
	require.NoError(t, err)
	assert.Equal(t, `{"a":[2.0,1e+21,0.5,3],"b":1.0,"c":{"z":null}}`, string(js))
}
