# Packer's QEMU builder doing what bench/build-compare.sh asks of every tool: boot the base
# image, write /etc/kiln-bench, check it, power off. The base image is a copy of Kiln's debian-12
# disk into which the bench injected an SSH key for root with virt-customize (the image has no
# cloud-init); the new image is a qcow2 overlay on it (disk_image + use_backing_file). The guest
# boots its kernel directly (-kernel/-initrd/-append, as Kiln boots it), under TCG.
# Usage: packer build -var base=... -var kernel=... -var initrd=... -var cmdline=...
#                     -var key=... -var output=... -var cpus=1 -var memory=512 build-compare.pkr.hcl

variable "base" { type = string }
variable "kernel" { type = string }
variable "initrd" { type = string }
variable "cmdline" { type = string }
variable "key" { type = string }
variable "output" { type = string }
variable "text" {
  type    = string
  default = "written by kiln"
}
# true: boot the kernel directly, as Kiln does; false: through the image's firmware and GRUB, as a
# Packer user's build of a disk image does.
variable "direct_boot" {
  type    = bool
  default = true
}
variable "cpus" {
  type    = number
  default = 1
}
variable "memory" {
  type    = number
  default = 512
}

source "qemu" "bench" {
  iso_url          = var.base
  iso_checksum     = "none"
  disk_image       = true
  use_backing_file = true
  skip_compaction  = true
  # This Packer (1.6.6) runs `qemu-img create -b BASE` without the backing format, which
  # qemu-img 7 refuses: name it.
  qemu_img_args {
    create = ["-F", "qcow2"]
  }
  format           = "qcow2"
  accelerator      = "tcg"
  headless         = true
  cpus             = var.cpus
  memory           = var.memory
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  output_directory = var.output
  vm_name          = "bench.qcow2"
  qemuargs = var.direct_boot ? [
    ["-kernel", var.kernel],
    ["-initrd", var.initrd],
    ["-append", var.cmdline],
  ] : []
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.key
  ssh_timeout          = "10m"
  shutdown_command     = "poweroff"
  shutdown_timeout     = "5m"
}

build {
  sources = ["source.qemu.bench"]

  provisioner "shell" {
    inline = [
      "echo '${var.text}' > /etc/kiln-bench",
      "grep -qx '${var.text}' /etc/kiln-bench",
    ]
  }
}
