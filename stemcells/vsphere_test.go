package stemcells_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/ovf"

	"github.com/kpaas/kpaas/stemcells"
)

// The descriptor is read the way govc and the vSphere CPI's import read it.
func TestOVFDescriptorParsesWithGovmomi(t *testing.T) {
	d := stemcells.OVFDescriptor("image", "image-disk1.vmdk", 123456, 3<<30, 2, 2048)
	env, err := ovf.Unmarshal(strings.NewReader(d))
	require.NoError(t, err)
	require.Len(t, env.References, 1)
	assert.Equal(t, "image-disk1.vmdk", env.References[0].Href)
	assert.Equal(t, uint(123456), env.References[0].Size)
	require.NotNil(t, env.Disk)
	require.Len(t, env.Disk.Disks, 1)
	assert.Equal(t, "3221225472", env.Disk.Disks[0].Capacity)
	require.NotNil(t, env.VirtualSystem)
	hw := env.VirtualSystem.VirtualHardware[0]
	assert.Equal(t, "vmx-13", *hw.System.VirtualSystemType)
	types := map[uint16]int{}
	for _, item := range hw.Item {
		if item.ResourceType != nil {
			types[uint16(*item.ResourceType)]++
		}
	}
	assert.Equal(t, map[uint16]int{3: 1, 4: 1, 5: 1, 6: 1, 10: 1, 15: 1, 17: 1}, types, "cpu, memory, IDE, SCSI, NIC, CD-ROM, disk")
}
