package stemcells

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// VSphereAgentConfig is the agent.json of vSphere stemcells: settings from
// the VM's guestinfo (guestinfo.userdata), read with open-vm-tools' rpctool.
const VSphereAgentConfig = `{"Platform":{"Linux":{"DevicePathResolutionType":"scsi","CreatePartitionIfNoEphemeralDisk":true}},` +
	`"Infrastructure":{"Settings":{"Sources":[{"Type":"VsphereGuestInfo","RpcToolPath":"/usr/bin/vmware-rpctool"}]}}}` + "\n"

// VSpherePackages are added to DefaultDebianPackages: the generic kernel
// (LSI Logic SCSI, vmxnet3) and open-vm-tools (guestinfo, clean shutdown).
var VSpherePackages = []string{"linux-image-amd64", "systemd-sysv", "udev", "kmod", "initramfs-tools", "open-vm-tools"}

// VSphere builds a Debian stemcell in BOSH's vSphere format: image = tar.gz
// of image.ovf, image-disk1.vmdk (streamOptimized) and image.mf (SHA256 of
// both), the same boot disk as the qcow2 stemcell. It is imported as a
// template by the vSphere CPI.
func VSphere(ctx context.Context, o OpenStackOptions) (*Manifest, error) {
	return bootable(ctx, o, bootTarget{
		iaas: "vsphere", hypervisor: "esxi", format: "vsphere-ova",
		packages: VSpherePackages, agentConfig: VSphereAgentConfig,
		cmdline: "root=LABEL=root ro console=ttyS0,115200n8 console=tty0 net.ifnames=0",
		props:   map[string]any{"disk_format": "ovf", "container_format": "bare", "root_device_name": "/dev/sda1"},
		image: func(ctx context.Context, raw, dir string) ([]string, error) {
			fi, err := os.Stat(raw)
			if err != nil {
				return nil, err
			}
			return []string{"image.ovf", "image-disk1.vmdk", "image.mf"}, writeOVF(ctx, raw, dir, fi.Size())
		},
	})
}

// writeOVF converts raw into image-disk1.vmdk and writes the OVF descriptor
// and its manifest into dir.
func writeOVF(ctx context.Context, raw, dir string, capacity int64) error {
	vmdk := filepath.Join(dir, "image-disk1.vmdk")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic", raw, vmdk).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert to vmdk: %v: %s", err, out)
	}
	fi, err := os.Stat(vmdk)
	if err != nil {
		return err
	}
	ovf := OVFDescriptor("image", "image-disk1.vmdk", fi.Size(), capacity, 2, 2048)
	if err := os.WriteFile(filepath.Join(dir, "image.ovf"), []byte(ovf), 0o644); err != nil {
		return err
	}
	var mf strings.Builder
	for _, f := range []string{"image.ovf", "image-disk1.vmdk"} {
		sum, err := fileSHA256(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		fmt.Fprintf(&mf, "SHA256(%s)= %s\n", f, sum)
	}
	return os.WriteFile(filepath.Join(dir, "image.mf"), []byte(mf.String()), 0o644)
}

func fileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// OVFDescriptor is a minimal OVF 1.0 envelope for one VM: cpus, memMiB, an
// LSI Logic SCSI controller with the disk, one vmxnet3 NIC and a CD-ROM.
func OVFDescriptor(name, vmdk string, vmdkSize, capacity int64, cpus, memMiB int) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="kpaas" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="%[2]s" ovf:id="file1" ovf:size="%[3]d"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="%[4]d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="%[1]s">
    <Info>A virtual machine</Info>
    <Name>%[1]s</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian11_64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%[1]s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>%[5]d virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>%[5]d</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>%[6]dMB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>%[6]d</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>IDE Controller</rasd:Description>
        <rasd:ElementName>IDE Controller 0</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceType>5</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>CD-ROM 1</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:Parent>5</rasd:Parent>
        <rasd:ResourceType>15</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>7</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, name, vmdk, vmdkSize, capacity, cpus, memMiB)
}
