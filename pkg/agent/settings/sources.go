package settings

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Source is one place the agent can read its settings from at boot.
type Source interface {
	Name() string
	Read(ctx context.Context) (*Settings, error)
}

// FileSource reads a settings file (the local cloud writes one into the rootfs).
type FileSource struct{ Path string }

func (s FileSource) Name() string { return "File " + s.Path }
func (s FileSource) Read(ctx context.Context) (*Settings, error) {
	return Load(s.Path)
}

// ConfigDriveSource reads an OpenStack config drive: the first of DiskPaths
// that is readable (a mounted directory, or a block device it mounts
// read-only, which needs root), parsing UserDataPath as settings JSON and
// taking the VM name from MetaDataPath when settings lack it.
type ConfigDriveSource struct {
	DiskPaths    []string // e.g. /dev/disk/by-label/config-2, or a directory
	MetaDataPath string   // e.g. ec2/latest/meta-data.json
	UserDataPath string   // e.g. ec2/latest/user-data
}

func (s ConfigDriveSource) Name() string { return "ConfigDrive" }

func (s ConfigDriveSource) Read(ctx context.Context) (*Settings, error) {
	var errs []string
	for _, p := range s.DiskPaths {
		st, err := s.readFrom(ctx, p)
		if err == nil {
			return st, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", p, err))
	}
	return nil, fmt.Errorf("no readable config drive: %s", strings.Join(errs, "; "))
}

func (s ConfigDriveSource) readFrom(ctx context.Context, p string) (*Settings, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	dir := p
	if !fi.IsDir() {
		if os.Geteuid() != 0 {
			return nil, errors.New("mounting a config drive needs root")
		}
		mnt, err := os.MkdirTemp("", "kpaas-configdrive-")
		if err != nil {
			return nil, err
		}
		defer os.Remove(mnt)
		if out, err := exec.CommandContext(ctx, "mount", "-o", "ro", p, mnt).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mounting: %v: %s", err, bytes.TrimSpace(out))
		}
		defer exec.Command("umount", mnt).Run()
		dir = mnt
	}
	b, err := os.ReadFile(filepath.Join(dir, s.UserDataPath))
	if err != nil {
		return nil, err
	}
	st, err := parseUserData(b)
	if err != nil {
		return nil, err
	}
	if s.MetaDataPath != "" && st.VM.Name == "" {
		if mb, err := os.ReadFile(filepath.Join(dir, s.MetaDataPath)); err == nil {
			var md struct {
				InstanceID string `json:"instance-id"`
				UUID       string `json:"uuid"`
				Name       string `json:"name"`
			}
			if json.Unmarshal(mb, &md) == nil {
				st.VM.Name = firstNonEmpty(md.Name, md.InstanceID, md.UUID)
			}
		}
	}
	return st, nil
}

// userData is the OpenStack user_data around the settings: the CPI merges
// server.name, networks and dns.nameserver into the full settings.
type userData struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	DNS struct {
		Nameserver []string `json:"nameserver"`
	} `json:"dns"`
}

// parseUserData reads user data that is settings JSON, possibly base64 (or
// base64url) encoded, and folds in the CPI's server.name / dns.nameserver.
func parseUserData(b []byte) (*Settings, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '{' {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if d, err := enc.DecodeString(string(b)); err == nil {
				b = d
				break
			}
		}
	}
	st, err := Parse(b)
	if err != nil {
		return nil, err
	}
	var ud userData
	if json.Unmarshal(b, &ud) == nil {
		if st.VM.Name == "" {
			st.VM.Name = ud.Server.Name
		}
		if len(ud.DNS.Nameserver) > 0 {
			for name, n := range st.Networks {
				if len(n.DNS) == 0 {
					n.DNS = ud.DNS.Nameserver
					st.Networks[name] = n
				}
			}
		}
	}
	return st, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// HTTPSource reads settings from a metadata service (OpenStack, AWS):
// GET URI+UserDataPath, with an IMDSv2 token from PUT URI+TokenPath when set.
type HTTPSource struct {
	URI          string // e.g. http://169.254.169.254
	UserDataPath string // e.g. /latest/user-data
	TokenPath    string // e.g. /latest/api/token (optional)
	Headers      map[string]string
	Client       *http.Client
}

func (s HTTPSource) Name() string { return "HTTP " + s.URI }

func (s HTTPSource) Read(ctx context.Context) (*Settings, error) {
	cl := s.Client
	if cl == nil {
		cl = &http.Client{Timeout: 10 * time.Second}
	}
	headers := map[string]string{}
	for k, v := range s.Headers {
		headers[k] = v
	}
	if s.TokenPath != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URI+s.TokenPath, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "300")
		resp, err := cl.Do(req)
		if err != nil {
			return nil, fmt.Errorf("getting a metadata token: %w", err)
		}
		tok, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("getting a metadata token: %s", resp.Status)
		}
		headers["X-aws-ec2-metadata-token"] = strings.TrimSpace(string(tok))
	}
	path := s.UserDataPath
	if path == "" {
		path = "/latest/user-data"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URI+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading user data from %s: %w", s.URI+path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading user data from %s: %s", s.URI+path, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	return parseUserData(b)
}

// VsphereGuestInfoSource reads guestinfo.userdata through vmware-rpctool
// (base64, gzip when guestinfo.userdata.encoding says so), then clears it so
// the secrets in it do not stay readable from the VM's extraConfig.
type VsphereGuestInfoSource struct {
	RPCToolPath string // default vmware-rpctool
	// Run runs the rpc tool with one argument (tests pass a fake).
	Run func(ctx context.Context, tool, arg string) ([]byte, error)
}

func (s VsphereGuestInfoSource) Name() string { return "VsphereGuestInfo" }

func (s VsphereGuestInfoSource) Read(ctx context.Context) (*Settings, error) {
	tool := s.RPCToolPath
	if tool == "" {
		tool = "vmware-rpctool"
	}
	run := s.Run
	if run == nil {
		run = func(ctx context.Context, tool, arg string) ([]byte, error) {
			return exec.CommandContext(ctx, tool, arg).Output()
		}
	}
	data, err := run(ctx, tool, "info-get guestinfo.userdata")
	if err != nil {
		return nil, fmt.Errorf("%s info-get guestinfo.userdata: %w", tool, err)
	}
	enc, _ := run(ctx, tool, "info-get guestinfo.userdata.encoding")
	raw := strings.TrimSpace(string(data))
	if raw == "" || raw == "---" {
		return nil, errors.New("guestinfo.userdata is empty (already read and cleared?)")
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("guestinfo.userdata is not base64: %w", err)
	}
	if e := strings.TrimSpace(string(enc)); strings.Contains(e, "gz") || (len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("guestinfo.userdata: %w", err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("guestinfo.userdata: %w", err)
		}
	}
	st, err := Parse(b)
	if err != nil {
		return nil, err
	}
	run(ctx, tool, "info-set guestinfo.userdata ---")
	return st, nil
}

// AgentConfig is the part of BOSH's agent.json kpaas-agent reads: the
// settings sources, tried in order.
type AgentConfig struct {
	Infrastructure struct {
		Settings struct {
			Sources []SourceConfig `json:"Sources"`
		} `json:"Settings"`
	} `json:"Infrastructure"`
}

// SourceConfig is one BOSH settings source (Type discriminator).
type SourceConfig struct {
	Type         string            `json:"Type"`
	SettingsPath string            `json:"SettingsPath"`
	DiskPaths    []string          `json:"DiskPaths"`
	MetaDataPath string            `json:"MetaDataPath"`
	UserDataPath string            `json:"UserDataPath"`
	URI          string            `json:"URI"`
	Headers      map[string]string `json:"Headers"`
	TokenPath    string            `json:"TokenPath"`
	RPCToolPath  string            `json:"RpcToolPath"`
}

// LoadAgentConfig reads agent.json.
func LoadAgentConfig(path string) ([]Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading agent config: %w", err)
	}
	var c AgentConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parsing agent config %s: %w", path, err)
	}
	var out []Source
	for i, sc := range c.Infrastructure.Settings.Sources {
		switch sc.Type {
		case "File":
			out = append(out, FileSource{Path: sc.SettingsPath})
		case "ConfigDrive":
			out = append(out, ConfigDriveSource{DiskPaths: sc.DiskPaths, MetaDataPath: sc.MetaDataPath, UserDataPath: sc.UserDataPath})
		case "HTTP":
			out = append(out, HTTPSource{URI: sc.URI, UserDataPath: sc.UserDataPath, TokenPath: sc.TokenPath, Headers: sc.Headers})
		case "VsphereGuestInfo":
			out = append(out, VsphereGuestInfoSource{RPCToolPath: sc.RPCToolPath})
		default:
			return nil, fmt.Errorf("agent config %s: Sources[%d]: type %q is not supported (File, ConfigDrive, HTTP, VsphereGuestInfo)", path, i, sc.Type)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("agent config %s: no settings sources", path)
	}
	return out, nil
}

// ReadFirst tries the sources in order and returns the first settings read.
func ReadFirst(ctx context.Context, sources []Source) (*Settings, Source, error) {
	var errs []string
	for _, s := range sources {
		st, err := s.Read(ctx)
		if err == nil {
			return st, s, nil
		}
		errs = append(errs, s.Name()+": "+err.Error())
	}
	return nil, nil, fmt.Errorf("no settings source answered: %s", strings.Join(errs, "; "))
}
