package vsphere

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"

	"crypto/rand"

	"github.com/kdomanski/iso9660"

	"github.com/kpaas/kpaas/pkg/agent/settings"
)

// Guestinfo keys the agent reads (VsphereGuestInfo settings source).
const (
	GuestinfoUserdata         = "guestinfo.userdata"
	GuestinfoUserdataEncoding = "guestinfo.userdata.encoding"
	// EnvISOFile is the one file of the env ISO (BOSH agent CDROM source, FileName "env").
	EnvISOFile = "env"
)

// encodeSettings renders the settings document BOSH's vSphere CPI writes:
// the agent settings with the CPI's agent properties (mbus, ntp, blobstore)
// merged in where the settings leave them empty.
func (d *Driver) encodeSettings(s *settings.Settings) ([]byte, error) {
	if a := d.cfg.Agent; len(a) > 0 {
		if v, ok := a["mbus"].(string); ok && s.Mbus == "" {
			s.Mbus = v
		}
		if v, ok := a["ntp"].([]any); ok && len(s.NTP) == 0 {
			for _, x := range v {
				s.NTP = append(s.NTP, fmt.Sprint(x))
			}
		}
		if v, ok := a["blobstore"].(map[string]any); ok && s.Blobstore == nil {
			b, _ := json.Marshal(v)
			var bs settings.Blobstore
			if err := json.Unmarshal(b, &bs); err == nil {
				s.Blobstore = &bs
			}
		}
	}
	return s.Marshal()
}

// guestinfo returns the extraConfig values that carry the settings.
func guestinfo(doc []byte) map[string]string {
	return map[string]string{
		GuestinfoUserdata:         base64.StdEncoding.EncodeToString(doc),
		GuestinfoUserdataEncoding: "base64",
	}
}

// envISO builds the ISO9660 image with a single root file "env" holding doc
// (what BOSH's vSphere CPI attaches to the CD-ROM for agents that read it).
func envISO(doc []byte) ([]byte, error) {
	w, err := iso9660.NewWriter()
	if err != nil {
		return nil, fmt.Errorf("creating env iso: %w", err)
	}
	defer func() { _ = w.Cleanup() }()
	if err := w.AddFile(bytes.NewReader(doc), EnvISOFile); err != nil {
		return nil, fmt.Errorf("adding env to iso: %w", err)
	}
	var buf bytes.Buffer
	if err := w.WriteTo(&buf, "cidata"); err != nil {
		return nil, fmt.Errorf("writing env iso: %w", err)
	}
	return buf.Bytes(), nil
}

// ReadEnvISO returns the settings document inside an env ISO.
func ReadEnvISO(r io.ReaderAt) ([]byte, error) {
	img, err := iso9660.OpenImage(r)
	if err != nil {
		return nil, fmt.Errorf("opening env iso: %w", err)
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, fmt.Errorf("reading env iso root: %w", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, fmt.Errorf("listing env iso: %w", err)
	}
	for _, c := range children {
		if c.Name() == EnvISOFile {
			return io.ReadAll(c.Reader())
		}
	}
	return nil, fmt.Errorf("env iso has no file %q", EnvISOFile)
}

// macFor derives a NIC's MAC in VMware's manual range 00:50:56:00:00:00 -
// 00:50:56:3f:ff:ff: from the low 22 bits of a static IPv4 (unique within any
// subnet up to /10, and the same IP always gets the same MAC, so neighbours'
// ARP caches stay right when a VM is recreated), else random.
func macFor(ip string) string {
	var v uint32
	if p := net.ParseIP(ip).To4(); p != nil {
		v = binary.BigEndian.Uint32(p)
	} else {
		var b [4]byte
		_, _ = rand.Read(b[:])
		v = binary.BigEndian.Uint32(b[:])
	}
	v &= 0x3fffff
	return fmt.Sprintf("00:50:56:%02x:%02x:%02x", byte(v>>16), byte(v>>8), byte(v))
}
