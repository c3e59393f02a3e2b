package agent

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/kpaas/kpaas/pkg/agent/settings"
)

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func testSettings() *settings.Settings {
	return &settings.Settings{AgentID: "unit", Disks: settings.Disks{Persistent: map[string]any{}}}
}
