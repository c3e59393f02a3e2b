package settings

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const settingsDoc = `{"agent_id":"a-1","vm":{"name":"vm-1"},"networks":{"default":{"type":"manual","ip":"10.0.0.5"}},
 "disks":{"system":"/dev/sda","ephemeral":"/dev/sdb"},"env":{"bosh":{},"kpaas":{"host_key":"PEM","authorized_keys":["ssh-ed25519 AAAA k"]}}}`

func TestFileSource(t *testing.T) {
	p := filepath.Join(t.TempDir(), "settings.json")
	require.NoError(t, os.WriteFile(p, []byte(settingsDoc), 0o600))
	s, err := FileSource{Path: p}.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "a-1", s.AgentID)
	_, err = FileSource{Path: p + ".missing"}.Read(context.Background())
	assert.ErrorContains(t, err, "reading agent settings")
}

// A config drive as the OpenStack CPI writes it, read from a directory (a
// mounted drive): user data is the settings, merged with server.name and
// dns.nameserver.
func TestConfigDriveSource(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "ec2/latest"), 0o755))
	ud := `{"server":{"name":"vm-from-server"},"dns":{"nameserver":["10.0.0.2"]},"agent_id":"a-2",
	 "networks":{"default":{"type":"dynamic","use_dhcp":true}},"disks":{"system":"/dev/sda"},"env":{"bosh":{},"kpaas":{"host_key":"K"}}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ec2/latest/user-data"), []byte(ud), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ec2/latest/meta-data.json"), []byte(`{"instance-id":"i-123"}`), 0o644))
	src := ConfigDriveSource{DiskPaths: []string{filepath.Join(dir, "missing"), dir}, MetaDataPath: "ec2/latest/meta-data.json", UserDataPath: "ec2/latest/user-data"}
	s, err := src.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "a-2", s.AgentID)
	assert.Equal(t, "vm-from-server", s.VM.Name)
	assert.Equal(t, []string{"10.0.0.2"}, s.Networks["default"].DNS)
	assert.True(t, s.Networks["default"].UseDHCP)

	_, err = ConfigDriveSource{DiskPaths: []string{filepath.Join(dir, "nope")}, UserDataPath: "x"}.Read(context.Background())
	assert.ErrorContains(t, err, "no readable config drive")
}

func TestHTTPSource(t *testing.T) {
	var tokenSeen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Write([]byte("tok-1\n"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/user-data":
			tokenSeen = r.Header.Get("X-aws-ec2-metadata-token")
			// base64url-encoded settings, as some metadata services serve them
			w.Write([]byte(base64.URLEncoding.EncodeToString([]byte(settingsDoc))))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	s, err := HTTPSource{URI: srv.URL, UserDataPath: "/latest/user-data", TokenPath: "/latest/api/token"}.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "a-1", s.AgentID)
	assert.Equal(t, "tok-1", tokenSeen)

	_, err = HTTPSource{URI: srv.URL, UserDataPath: "/nope"}.Read(context.Background())
	assert.ErrorContains(t, err, "404")
}

func TestVsphereGuestInfoSource(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(settingsDoc))
	zw.Close()
	store := map[string]string{
		"guestinfo.userdata":          base64.StdEncoding.EncodeToString(gz.Bytes()),
		"guestinfo.userdata.encoding": "gzip+base64",
	}
	var calls []string
	run := func(ctx context.Context, tool, arg string) ([]byte, error) {
		calls = append(calls, arg)
		var key, val string
		if n, _ := fmtSscan(arg, "info-get %s", &key); n == 1 {
			v, ok := store[key]
			if !ok {
				return nil, errors.New("no value")
			}
			return []byte(v + "\n"), nil
		}
		if n, _ := fmtSscan(arg, "info-set %s %s", &key, &val); n == 2 {
			store[key] = val
			return nil, nil
		}
		return nil, errors.New("bad command " + arg)
	}
	src := VsphereGuestInfoSource{Run: run}
	s, err := src.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "a-1", s.AgentID)
	assert.Equal(t, "---", store["guestinfo.userdata"], "the secrets are cleared after reading")
	_, err = src.Read(context.Background())
	assert.ErrorContains(t, err, "already read and cleared")
}

// The real tool path: a vmware-rpctool stand-in script on disk.
func TestVsphereGuestInfoSourceWithTool(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "vmware-rpctool")
	script := "#!/bin/sh\ncase \"$1\" in\n'info-get guestinfo.userdata') echo " + base64.StdEncoding.EncodeToString([]byte(settingsDoc)) + " ;;\n'info-get guestinfo.userdata.encoding') echo base64 ;;\n'info-set guestinfo.userdata ---') touch " + filepath.Join(dir, "cleared") + " ;;\n*) exit 1 ;;\nesac\n"
	require.NoError(t, os.WriteFile(tool, []byte(script), 0o755))
	s, err := VsphereGuestInfoSource{RPCToolPath: tool}.Read(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "vm-1", s.VM.Name)
	assert.FileExists(t, filepath.Join(dir, "cleared"))
}

func TestAgentConfigAndReadFirst(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "settings.json")
	require.NoError(t, os.WriteFile(good, []byte(settingsDoc), 0o600))
	cfg := filepath.Join(dir, "agent.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"Platform":{"Linux":{}},"Infrastructure":{"Settings":{"Sources":[
	  {"Type":"File","SettingsPath":"`+filepath.Join(dir, "missing.json")+`"},
	  {"Type":"ConfigDrive","DiskPaths":["/dev/disk/by-label/CONFIG-2-kpaas-test-none"],"MetaDataPath":"ec2/latest/meta-data.json","UserDataPath":"ec2/latest/user-data"},
	  {"Type":"File","SettingsPath":"`+good+`"}]}}}`), 0o644))
	srcs, err := LoadAgentConfig(cfg)
	require.NoError(t, err)
	require.Len(t, srcs, 3)
	s, from, err := ReadFirst(context.Background(), srcs)
	require.NoError(t, err)
	assert.Equal(t, "a-1", s.AgentID)
	assert.Equal(t, "File "+good, from.Name())

	_, _, err = ReadFirst(context.Background(), srcs[:2])
	assert.ErrorContains(t, err, "no settings source answered")

	require.NoError(t, os.WriteFile(cfg, []byte(`{"Infrastructure":{"Settings":{"Sources":[{"Type":"CDROM"}]}}}`), 0o644))
	_, err = LoadAgentConfig(cfg)
	assert.ErrorContains(t, err, `type "CDROM" is not supported`)
}
