/* The Linux cleanup document (Image Builder's post-build housekeeping, run by Kiln in the guest
 * before the snapshot). Sections and their skip flags follow Image Builder's Linux cleanup
 * script: a file named after the flag in workingDirectory skips that section. */
#include "factory/build.h"

static const char cleanup_document[] =
    "name: kiln-linux-cleanup\n"
    "description: Removes build-time secrets, logs and host keys before the snapshot, as Image "
    "Builder's Linux cleanup script does. Create {{workingDirectory}}/skip_cleanup_<section> to "
    "skip a section.\n"
    "schemaVersion: 1.0\n"
    "parameters:\n"
    "  - workingDirectory:\n"
    "      type: string\n"
    "      default: /tmp\n"
    "      description: Where the skip_cleanup_* flag files are looked for.\n"
    "  - keepToeFolder:\n"
    "      type: string\n"
    "      default: none\n"
    "      description: Suffix of the TOE folder of this very run, which is kept.\n"
    "phases:\n"
    "  - name: build\n"
    "    steps:\n"
    "      - name: LinuxCleanup\n"
    "        action: ExecuteBash\n"
    "        inputs:\n"
    "          commands:\n"
    "            - |\n"
    "              WD='{{ workingDirectory }}'\n"
    "              KEEP='{{ keepToeFolder }}'\n"
    "              remove() {\n"
    "                for f in \"$@\"; do\n"
    "                  if [ -f \"$f\" ]; then\n"
    "                    echo \"Deleting $f\"\n"
    "                    shred -zuf \"$f\" 2>/dev/null || rm -f \"$f\"\n"
    "                  fi\n"
    "                  if [ -f \"$f\" ]; then echo \"Failed to delete '$f'. Failing.\"; exit 1; "
    "fi\n"
    "                done\n"
    "              }\n"
    "              skipped() {\n"
    "                if [ -f \"$WD/$1\" ]; then echo \"Skipping the $1 section\"; return 0; fi\n"
    "                return 1\n"
    "              }\n"
    "              skipped skip_cleanup_cloudinit_files || {\n"
    "                remove /etc/sudoers.d/90-cloud-init-users /etc/locale.conf \\\n"
    "                       /var/log/cloud-init.log /var/log/cloud-init-output.log\n"
    "                rm -rf /var/lib/cloud/instances/* /var/lib/cloud/instance\n"
    "              }\n"
    "              skipped skip_cleanup_ssm_log_files || {\n"
    "                remove /var/log/amazon/ssm/amazon-ssm-agent.log "
    "/var/log/amazon/ssm/errors.log \\\n"
    "                       /var/log/amazon/ssm/amazon-ssm-agent.log.1 "
    "/var/log/amazon/ssm/errors.log.1\n"
    "              }\n"
    "              skipped skip_cleanup_ssh_files || {\n"
    "                remove /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub \\\n"
    "                       /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_ecdsa_key.pub \\\n"
    "                       /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub \\\n"
    "                       /etc/ssh/ssh_host_dsa_key /etc/ssh/ssh_host_dsa_key.pub \\\n"
    "                       /root/.ssh/authorized_keys\n"
    "                for f in /home/*/.ssh/authorized_keys; do remove \"$f\"; done\n"
    "              }\n"
    "              skipped skip_cleanup_instance_log_files || {\n"
    "                remove /var/log/audit/audit.log /var/log/boot.log /var/log/dmesg "
    "/var/log/cron\n"
    "              }\n"
    "              skipped skip_cleanup_toe_files || {\n"
    "                for d in \"$WD\"/TOE_*; do\n"
    "                  case \"$d\" in *\"$KEEP\") continue ;; esac\n"
    "                  if [ -d \"$d\" ]; then echo \"Deleting $d\"; rm -rf \"$d\"; fi\n"
    "                done\n"
    "              }\n"
    "              skipped skip_cleanup_machine_id || {\n"
    "                if [ -s /etc/machine-id ]; then echo \"Emptying /etc/machine-id\"; "
    ": > /etc/machine-id; fi\n"
    "              }\n"
    "              exit 0\n";

const char *
kiln_build_cleanup_document(void)
{
    return cleanup_document;
}

/* The kernel the image's boot loader will start, against the one this instance runs (the parent's
 * direct-boot kernel): "key value" lines after "kiln-boot-kernel 1". The version is read from
 * the bzImage header (the string uname -r prints), falling back to the file name; the kernel
 * is the first entry of grub.cfg (GRUB_DEFAULT=0, Debian's default), else /vmlinuz, else the
 * newest /boot/vmlinuz-*. Shell, awk, od and dd only: milliseconds in the guest. */
#define BOOT_KERNEL_STEP                                                                           \
    "      - name: ReportBootKernel\n"                                                             \
    "        action: ExecuteBash\n"                                                                \
    "        inputs:\n"                                                                            \
    "          commands:\n"                                                                        \
    "            - |\n"                                                                            \
    "              hdr_version() {\n"                                                              \
    "                [ \"$(dd if=\"$1\" bs=1 skip=514 count=4 2>/dev/null)\" = HdrS ] || return 1\n" \
    "                off=$(od -An -tu2 -j 526 -N 2 \"$1\" | tr -d ' ')\n"                          \
    "                [ -n \"$off\" ] && [ \"$off\" -gt 0 ] || return 1\n"                          \
    "                dd if=\"$1\" bs=512 skip=$((off / 512 + 1)) count=1 2>/dev/null |\n"          \
    "                  dd bs=1 skip=$((off % 512)) count=96 2>/dev/null | tr '\\000' '\\n' |\n"   \
    "                  head -n 1 | cut -d ' ' -f 1\n"                                              \
    "              }\n"                                                                            \
    "              echo 'kiln-boot-kernel 1'\n"                                                    \
    "              running=$(uname -r)\n"                                                          \
    "              echo \"running $running\"\n"                                                    \
    "              if [ -d \"/lib/modules/$running\" ]; then echo 'modules yes'\n"                 \
    "              else echo 'modules no'; fi\n"                                                   \
    "              path=\n"                                                                        \
    "              for cfg in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do\n"                      \
    "                [ -r \"$cfg\" ] || continue\n"                                                \
    "                echo 'loader grub'\n"                                                         \
    "                path=$(awk '$1 == \"linux\" || $1 == \"linuxefi\" || $1 == \"linux16\" {\n"   \
    "                  print $2; exit }' \"$cfg\")\n"                                              \
    "                break\n"                                                                      \
    "              done\n"                                                                         \
    "              # A separate /boot: GRUB names the kernel relative to it.\n"                    \
    "              if [ -n \"$path\" ] && [ ! -e \"$path\" ] && [ -e \"/boot$path\" ]; then\n"   \
    "                path=/boot$path\n"                                                            \
    "              fi\n"                                                                           \
    "              if [ -z \"$path\" ] && [ -e /vmlinuz ]; then path=$(readlink -f /vmlinuz); fi\n" \
    "              if [ -z \"$path\" ]; then\n"                                                    \
    "                path=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V 2>/dev/null | tail -n 1)\n" \
    "              fi\n"                                                                           \
    "              if [ -n \"$path\" ] && [ -f \"$path\" ]; then\n"                                \
    "                echo \"path $path\"\n"                                                        \
    "                version=$(hdr_version \"$path\") || version=\n"                               \
    "                if [ -z \"$version\" ]; then\n"                                               \
    "                  case \"$path\" in */vmlinuz-*) version=${path##*/vmlinuz-} ;; esac\n"       \
    "                fi\n"                                                                         \
    "                if [ -n \"$version\" ]; then echo \"version $version\"; fi\n"                 \
    "              fi\n"

/* The inventory Kiln takes before the cleanup: the installed packages, one "name<TAB>version<TAB>
 * architecture" line each, from whichever package manager the image has. */
static const char inventory_document[] =
    "name: kiln-inventory\n"
    "description: Lists the installed packages for the image's manifest.\n"
    "schemaVersion: 1.0\n"
    "phases:\n"
    "  - name: build\n"
    "    steps:\n"
    "      - name: ListInstalledPackages\n"
    "        action: ExecuteBash\n"
    "        inputs:\n"
    "          commands:\n"
    "            - |\n"
    "              # A package manager counts only when its listing works: busybox carries an\n"
    "              # rpm applet that cannot list anything.\n"
    "              list() {\n"
    "                out=$(\"$@\" 2>/dev/null) || return 1\n"
    "                printf '%s\\n' \"$out\"\n"
    "              }\n"
    "              if command -v dpkg-query >/dev/null 2>&1 &&\n"
    "                 pkgs=$(list dpkg-query -W -f='${Package}\\t${Version}\\t${Architecture}\\n'); then\n"
    "                echo 'kiln-inventory dpkg'; printf '%s\\n' \"$pkgs\"\n"
    "              elif command -v rpm >/dev/null 2>&1 &&\n"
    "                 pkgs=$(list rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n'); then\n"
    "                echo 'kiln-inventory rpm'; printf '%s\\n' \"$pkgs\"\n"
    "              elif command -v apk >/dev/null 2>&1 && pkgs=$(list apk info -v); then\n"
    "                echo 'kiln-inventory apk'\n"
    "                printf '%s\\n' \"$pkgs\" | sed 's/-\\([0-9][^-]*-r[0-9]*\\)$/\\t\\1\\t/'\n"
    "              else\n"
    "                echo 'kiln-inventory none'\n"
    "              fi\n"
    BOOT_KERNEL_STEP;

const char *
kiln_build_inventory_document(void)
{
    return inventory_document;
}

static const char boot_kernel_document[] =
    "name: kiln-boot-kernel\n"
    "description: Reports the kernel the image's boot loader will start.\n"
    "schemaVersion: 1.0\n"
    "phases:\n"
    "  - name: build\n"
    "    steps:\n"
    BOOT_KERNEL_STEP;

const char *
kiln_build_boot_kernel_document(void)
{
    return boot_kernel_document;
}
