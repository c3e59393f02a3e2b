package interpolate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	engine "github.com/kpaas/kpaas/pkg/interpolate"
	"github.com/kpaas/kpaas/pkg/ui"
)

func testFactory() (*cmdutil.Factory, *ui.IOStreams) {
	ios, _, _, _ := ui.Test()
	return &cmdutil.Factory{IO: ios, Globals: &cmdutil.GlobalOptions{}}, ios
}

func TestFlags(t *testing.T) {
	tests := []struct {
		argv string
		want Options
	}{
		{"m.yml", Options{Manifest: "m.yml"}},
		{"m.yml -o a.yml --ops-file b.yml -o c.yml", Options{Manifest: "m.yml", Inputs: engine.Inputs{OpsFiles: []string{"a.yml", "b.yml", "c.yml"}}}},
		{"m.yml -v a=1 --var b=x,y", Options{Manifest: "m.yml", Inputs: engine.Inputs{Vars: []string{"a=1", "b=x,y"}}}},
		{"m.yml --var-file ca=ca.pem -l v1.yml --vars-file v2.yml", Options{Manifest: "m.yml", Inputs: engine.Inputs{VarFiles: []string{"ca=ca.pem"}, VarsFiles: []string{"v1.yml", "v2.yml"}}}},
		{"m.yml --vars-env KP --vars-env X --vars-store s.yml", Options{Manifest: "m.yml", Inputs: engine.Inputs{VarsEnv: []string{"KP", "X"}, VarsStore: "s.yml"}}},
		{"m.yml --path /a/b --var-errs --var-errs-unused", Options{Manifest: "m.yml", Path: "/a/b", VarErrs: true, VarErrsUnused: true}},
		{"- -o a.yml", Options{Manifest: "-", Inputs: engine.Inputs{OpsFiles: []string{"a.yml"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.argv, func(t *testing.T) {
			f, _ := testFactory()
			var got *Options
			cmd := NewCmdInterpolate(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(tt.argv))
			require.NoError(t, cmd.Execute())
			got.IO, got.Environ, got.ReadFile = nil, nil, nil
			assert.Equal(t, tt.want, *got)
		})
	}
	f, _ := testFactory()
	cmd := NewCmdInterpolate(f, func(*Options) error { return nil })
	cmd.SetArgs([]string{})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	var fe *cmdutil.FlagError
	assert.ErrorAs(t, cmd.Execute(), &fe)
	assert.Contains(t, cmd.Aliases, "int")
}

func writeFiles(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600))
	}
	return dir
}

func TestRun(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"m.yml":    "name: ((name))\nport: ((port))\nca: ((ca))\nurl: https://((host)):((port))\n",
		"ops.yml":  "- type: replace\n  path: /extra?\n  value: ((env_only))\n",
		"vars.yml": "name: from-file\nhost: h.example.com\n",
		"ca.pem":   "PEM\n",
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	ios, _, stdout, _ := ui.Test()
	opts := &Options{
		IO: ios, ReadFile: os.ReadFile,
		Environ:  func() []string { return []string{"KP_env_only=[1, 2]", "KP_name=from-env"} },
		Manifest: p("m.yml"),
		Inputs: engine.Inputs{
			OpsFiles:  []string{p("ops.yml")},
			Vars:      []string{"port=8443"},
			VarFiles:  []string{"ca=" + p("ca.pem")},
			VarsFiles: []string{p("vars.yml")},
			VarsEnv:   []string{"KP"},
		},
	}
	require.NoError(t, interpolateRun(opts))
	assert.Equal(t, "ca: |\n  PEM\nextra:\n- 1\n- 2\nname: from-file\nport: 8443\nurl: https://h.example.com:8443\n", stdout.String())

	stdout.Reset()
	opts.JSON = true
	require.NoError(t, interpolateRun(opts))
	var v map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &v))
	assert.Equal(t, "from-file", v["document"].(map[string]any)["name"])
	assert.Equal(t, []any{}, v["missing_variables"])
}

func TestRunStdinAndStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "creds.yml")
	ios, stdin, stdout, _ := ui.Test()
	stdin.WriteString("p: ((pw))\nvariables:\n- name: pw\n  type: password\n")
	opts := &Options{IO: ios, ReadFile: os.ReadFile, Environ: os.Environ, Manifest: "-", Inputs: engine.Inputs{VarsStore: store}, Path: "/p"}
	require.NoError(t, interpolateRun(opts))
	data, err := os.ReadFile(store)
	require.NoError(t, err)
	assert.Equal(t, "pw: "+stdout.String(), string(data), "the printed password is the stored one")
	assert.Regexp(t, `^[a-z0-9]{20}\n$`, stdout.String())
}

func TestRunErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"m.yml":   "a: ((x))\nb: ((y))\n",
		"bad.yml": "a: [1,\n",
		"ops.yml": "- type: replace\n  path: /nope/deeper\n  value: 1\n",
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"missing manifest", Options{Manifest: p("none.yml")}, []string{"reading manifest", "none.yml"}},
		{"bad manifest yaml", Options{Manifest: p("bad.yml")}, []string{p("bad.yml") + ":"}},
		{"ops failure", Options{Manifest: p("m.yml"), Inputs: engine.Inputs{OpsFiles: []string{p("ops.yml")}}}, []string{p("ops.yml"), "operation [0]", "/nope", "found map keys: 'a', 'b'"}},
		{"missing vars listed at once", Options{Manifest: p("m.yml"), VarErrs: true}, []string{"2 variable(s) have no value", "  - x (at /a)\n  - y (at /b)"}},
		{"unused", Options{Manifest: p("m.yml"), Inputs: engine.Inputs{Vars: []string{"x=1", "y=2", "z=3"}}, VarErrsUnused: true}, []string{"not used", "  - z"}},
		{"bad -v", Options{Manifest: p("m.yml"), Inputs: engine.Inputs{Vars: []string{"x"}}}, []string{"name=value"}},
		{"bad --path", Options{Manifest: p("m.yml"), Path: "/c"}, []string{"--path /c", "'c'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, stdout, _ := ui.Test()
			o := tt.opts
			o.IO, o.ReadFile, o.Environ = ios, os.ReadFile, os.Environ
			err := interpolateRun(&o)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, stdout.String())
		})
	}
	// the VarsError is typed, so deploy can list the names itself
	ios, _, _, _ := ui.Test()
	err := interpolateRun(&Options{IO: ios, ReadFile: os.ReadFile, Environ: os.Environ, Manifest: p("m.yml"), VarErrs: true})
	var ve *engine.VarsError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"x", "y"}, ve.Missing)
}
