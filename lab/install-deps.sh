#!/usr/bin/env bash
# Installs, from Debian's own archive, everything ballast's real-VM lab and its tests need on a
# fresh Debian 12 machine. Idempotent; run as root. CI runs it non-interactively.
#
# chromium is for the dashboard's browser test (test/unit/dashboard-browser.test.ts, driven
# by playwright-core; about 110 MB to download). BALLAST_WITH_CHROMIUM=0 leaves it out.
#
# The guest kernel and the guest agent are NOT installed here: the lab build downloads their
# packages with `apt-get download` and unpacks them under lab/build/ (see docs/lab.md).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get install)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

packages=(
  # QEMU under TCG, and libvirtd with its QEMU driver and virsh
  qemu-system-x86 qemu-utils
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  # guest image: busybox for the initramfs; gcc + libc6-dev for the static workload
  busybox-static gcc libc6-dev
  # module decompression (.ko.xz / .ko.zst) and the cpio unit test
  xz-utils zstd cpio kmod
  # libraries the (dynamically linked) guest agent copies into the initramfs
  libglib2.0-0 libnuma1 liburing2 libudev1
  # python3 for the real-KSM merge test (a process with identical pages)
  python3
  # useradd/groupadd for libvirt's compiled-in QEMU account
  passwd
  # the Debian package's test (test/lab/package.test.ts): Debian's package checker, and
  # systemd-analyze to verify the installed unit (installing systemd starts nothing in a
  # container); dpkg-deb comes with dpkg
  lintian systemd
)
if [ "${BALLAST_WITH_CHROMIUM:-1}" = 1 ]; then
  packages+=(chromium)
fi

# Install only what is missing: naming an installed package to apt-get install would upgrade
# it (and things depending on it) on a machine that is in use.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The lab build needs apt's lists (apt-get download of the cloud kernel and the guest agent).
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  echo "install-deps: apt-get update" >&2
  apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}" >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#packages[@]} packages already installed" >&2
fi

# libvirtd's QEMU driver looks this account up before it reads qemu.conf (Debian's
# libvirt-daemon-system package would create it; that package needs a service manager).
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu

echo "install-deps: done" >&2
