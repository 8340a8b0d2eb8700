/* The AWSTOE documents Kiln itself runs in the guest: the Linux cleanup (Image Builder's
 * post-build housekeeping, before the snapshot; its sections and skip flags follow Image
 * Builder's Linux cleanup script: a file named after the flag in workingDirectory skips that
 * section), the package inventory, the boot-kernel report and the recipe's user data. */
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
 * direct-boot kernel): "key value" lines after "kiln-boot-kernel 1". The kernel is the first
 * entry of grub.cfg (GRUB_DEFAULT=0, Debian's default), else /vmlinuz, else the newest
 * /boot/vmlinuz-*. Its version: a file named vmlinuz-<running version> is the running kernel
 * (the common case: shell builtins only, as process starts are what costs under TCG);
 * otherwise the bzImage header says it (the string uname -r prints: the setup header's "HdrS"
 * at 0x202, the offset of the version string at 0x20e), so that a renamed copy of the same
 * kernel is not taken for another; else the file name. The inventory runs it after the package
 * list in the same shell (a step of its own costs a shell start, 0.1-0.2 s under TCG). */
#define BOOT_KERNEL_SCRIPT                                                                         \
    "              echo 'kiln-boot-kernel 1'\n"                                                    \
    "              read -r running </proc/sys/kernel/osrelease 2>/dev/null || running=$(uname -r)\n" \
    "              echo \"running $running\"\n"                                                    \
    "              if [ -d \"/lib/modules/$running\" ]; then echo 'modules yes'\n"                 \
    "              else echo 'modules no'; fi\n"                                                   \
    "              path=\n"                                                                        \
    "              for cfg in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do\n"                      \
    "                [ -r \"$cfg\" ] || continue\n"                                                \
    "                echo 'loader grub'\n"                                                         \
    "                while read -r word arg _; do\n"                                               \
    "                  case $word in linux|linuxefi|linux16) path=$arg; break ;; esac\n"           \
    "                done <\"$cfg\"\n"                                                             \
    "                break\n"                                                                      \
    "              done\n"                                                                         \
    "              # A separate /boot: GRUB names the kernel relative to it.\n"                    \
    "              if [ -n \"$path\" ] && [ ! -e \"$path\" ] && [ -e \"/boot$path\" ]; then\n"     \
    "                path=/boot$path\n"                                                            \
    "              fi\n"                                                                           \
    "              if [ -z \"$path\" ] && [ -e /vmlinuz ]; then path=$(readlink -f /vmlinuz); fi\n" \
    "              if [ -z \"$path\" ]; then\n"                                                    \
    "                set -- /boot/vmlinuz-*\n"                                                     \
    "                if [ -e \"$1\" ]; then path=$1; fi\n"                                         \
    "                if [ -n \"$path\" ] && [ $# -gt 1 ]; then\n"                                  \
    "                  path=$(ls -1 /boot/vmlinuz-* | sort -V | tail -n 1)\n"                      \
    "                fi\n"                                                                         \
    "              fi\n"                                                                           \
    "              if [ -n \"$path\" ] && [ -f \"$path\" ]; then\n"                                \
    "                echo \"path $path\"\n"                                                        \
    "                version=\n"                                                                   \
    "                case \"$path\" in */vmlinuz-\"$running\") version=$running ;; esac\n"         \
    "                if [ -z \"$version\" ]; then\n"                                               \
    "                  set -- $(od -An -tu2 -j 514 -N 14 \"$path\" 2>/dev/null)\n"                 \
    "                  if [ \"$1 $2\" = '25672 21362' ] && [ \"${7:-0}\" -gt 0 ]; then\n"          \
    "                    { version=$(dd if=\"$path\" bs=1 skip=$(($7 + 512)) count=64 2>/dev/null); } 2>/dev/null\n" \
    "                    version=${version%%[ ]*}\n"                                               \
    "                  fi\n"                                                                       \
    "                fi\n"                                                                         \
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
    "                 pkgs=$(list dpkg-query -W -f='${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\n'); then\n"
    "                # Removed packages whose configuration files remain are listed too: keep\n"
    "                # the installed ones (as libguestfs inspection does).\n"
    "                echo 'kiln-inventory dpkg'\n"
    "                printf '%s\\n' \"$pkgs\" | awk -F'\\t' '$1 == \"installed\" { print $2 \"\\t\" $3 \"\\t\" $4 }'\n"
    "              elif command -v rpm >/dev/null 2>&1 &&\n"
    "                 pkgs=$(list rpm -qa --qf '%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n'); then\n"
    "                echo 'kiln-inventory rpm'; printf '%s\\n' \"$pkgs\"\n"
    "              elif command -v apk >/dev/null 2>&1 && pkgs=$(list apk info -v); then\n"
    "                echo 'kiln-inventory apk'\n"
    "                printf '%s\\n' \"$pkgs\" | sed 's/-\\([0-9][^-]*-r[0-9]*\\)$/\\t\\1\\t/'\n"
    "              else\n"
    "                echo 'kiln-inventory none'\n"
    "              fi\n"
    BOOT_KERNEL_SCRIPT;

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
    "      - name: ReportBootKernel\n"
    "        action: ExecuteBash\n"
    "        inputs:\n"
    "          commands:\n"
    "            - |\n"
    BOOT_KERNEL_SCRIPT;

const char *
kiln_build_boot_kernel_document(void)
{
    return boot_kernel_document;
}

/* The recipe's userDataOverride, run as EC2 runs a user-data script at an instance's first boot
 * (cloud-init's scripts-user): its own interpreter line, as root, before the components. The
 * script travels base64-encoded, as the recipe holds it (only the alphabet and '=', safe inside
 * single quotes). */
static const char user_data_document[] =
    "name: kiln-user-data\n"
    "description: Runs the recipe's additionalInstanceConfiguration.userDataOverride script.\n"
    "schemaVersion: 1.0\n"
    "parameters:\n"
    "  - userData:\n"
    "      type: string\n"
    "      description: The script, base64-encoded.\n"
    "phases:\n"
    "  - name: build\n"
    "    steps:\n"
    "      - name: RunUserData\n"
    "        action: ExecuteBash\n"
    "        inputs:\n"
    "          commands:\n"
    "            - |\n"
    "              script=$(mktemp /run/kiln-user-data.XXXXXX)\n"
    "              trap 'rm -f \"$script\"' EXIT\n"
    "              printf '%s' '{{ userData }}' | base64 -d >\"$script\"\n"
    "              chmod 700 \"$script\"\n"
    "              \"$script\"\n";

const char *
kiln_build_user_data_document(void)
{
    return user_data_document;
}
