package interpolate

import (
	"fmt"

	"github.com/spf13/pflag"
)

// Inputs are the BOSH CLI's ops and variable flags (-o, -v, --var-file, -l, --vars-env,
// --vars-store), shared by `kpaas interpolate`, deploy and the config commands.
type Inputs struct {
	OpsFiles  []string // -o FILE, applied in order
	Vars      []string // -v NAME=VALUE (YAML value)
	VarFiles  []string // --var-file NAME=PATH
	VarsFiles []string // -l FILE
	VarsEnv   []string // --vars-env PREFIX
	VarsStore string   // --vars-store FILE
}

// AddFlags registers the flags on fs with the BOSH CLI's names and letters.
func (in *Inputs) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&in.OpsFiles, "ops-file", "o", nil, "Apply the go-patch operations in `FILE` (repeatable, in order)")
	fs.StringArrayVarP(&in.Vars, "var", "v", nil, "Set variable `NAME=VALUE` (the value is YAML)")
	fs.StringArrayVar(&in.VarFiles, "var-file", nil, "Set variable `NAME=PATH` to the file's contents")
	fs.StringArrayVarP(&in.VarsFiles, "vars-file", "l", nil, "Load variables from the YAML `FILE` (later files win)")
	fs.StringArrayVar(&in.VarsEnv, "vars-env", nil, "Load variables from environment variables `PREFIX`_name")
	fs.StringVar(&in.VarsStore, "vars-store", "", "Load variables from, and save generated ones to, the YAML `FILE`")
}

// Load reads and parses every file the inputs name. read reads a file; environ is
// os.Environ(). Errors name the file and the line.
func (in Inputs) Load(read func(string) ([]byte, error), environ func() []string) ([]*OpsFile, Sources, error) {
	var (
		ops []*OpsFile
		src Sources
	)
	for _, name := range in.OpsFiles {
		data, err := read(name)
		if err != nil {
			return nil, src, fmt.Errorf("reading ops file: %w", err)
		}
		of, err := ParseOpsFile(name, data)
		if err != nil {
			return nil, src, err
		}
		ops = append(ops, of)
	}
	for _, arg := range in.Vars {
		kv, err := ParseVarKV(arg)
		if err != nil {
			return nil, src, fmt.Errorf("-v: %w", err)
		}
		src.KVs = append(src.KVs, kv)
	}
	for _, arg := range in.VarFiles {
		kv, err := ReadVarFile(arg, read)
		if err != nil {
			return nil, src, err
		}
		src.VarFiles = append(src.VarFiles, kv)
	}
	for _, name := range in.VarsFiles {
		data, err := read(name)
		if err != nil {
			return nil, src, fmt.Errorf("reading vars file: %w", err)
		}
		m, err := ParseVarsFile(name, data)
		if err != nil {
			return nil, src, err
		}
		src.Files = append(src.Files, m)
	}
	for _, prefix := range in.VarsEnv {
		m, err := VarsFromEnv(prefix, environ())
		if err != nil {
			return nil, src, err
		}
		src.Env = append(src.Env, m)
	}
	if in.VarsStore != "" {
		st, err := OpenStore(in.VarsStore, nil)
		if err != nil {
			return nil, src, err
		}
		src.Store = st
	}
	return ops, src, nil
}
