#!/usr/bin/env bash
# Prepare the real-kernel lab on this machine (Debian bookworm, root):
#   1. host packages: qemu-system-x86 (from bookworm-backports when qemu-utils is
#      a backport, as on these machines: bookworm's qemu 7.2 conflicts with it) and
#      the tools that go into the guest initramfs (lvm2, thin-provisioning-tools,
#      xfsprogs, e2fsprogs, busybox-static, cpio, kmod, util-linux);
#   2. the guest kernel: Debian's linux-image-cloud-amd64 .deb, downloaded and
#      extracted (never installed) into the cache directory.
# apt runs with a PRIVATE source list and list directory under the cache directory, so
# the machine's own apt configuration (/etc/apt) is never touched.
# Work already done is skipped, so a second run costs well under a second.
#
# Env: STRATA_LAB_DIR  cache directory (default /var/cache/strata-lab)
# Writes $STRATA_LAB_DIR/kernel.env (KVER, KROOT, VMLINUZ) for run-guest.sh.
set -euo pipefail
LAB=${STRATA_LAB_DIR:-/var/cache/strata-lab}
mkdir -p "$LAB"
LAB=$(cd "$LAB" && pwd)
t0=$(date +%s.%N)
say() { echo "lab/prepare: $*"; }

# One preparation at a time per cache directory (two test runs on one machine).
exec 9>"$LAB/.prepare.lock"
flock 9

PKGS=(qemu-system-x86 lvm2 thin-provisioning-tools xfsprogs e2fsprogs busybox-static cpio kmod util-linux)
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done

kernel_ready() {
  [ -f "$LAB/kernel.env" ] || return 1
  # shellcheck disable=SC1091
  ( . "$LAB/kernel.env" && [ -f "$VMLINUZ" ] && [ -f "$KROOT/lib/modules/$KVER/modules.dep" ] )
}

if [ ${#missing[@]} -eq 0 ] && kernel_ready; then
  # shellcheck disable=SC1091
  . "$LAB/kernel.env"
  say "ready (packages installed, kernel $KVER cached in $LAB) in $(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.2f", a-b}')s"
  exit 0
fi

# ---- private apt configuration ---------------------------------------------
K=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$K" ] || { say "missing $K (package debian-archive-keyring)"; exit 1; }
mkdir -p "$LAB/apt/lists/partial" "$LAB/debs"
cat > "$LAB/apt/sources.list" <<EOF
deb [signed-by=$K] http://deb.debian.org/debian bookworm main
deb [signed-by=$K] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=$K] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$K] http://deb.debian.org/debian bookworm-backports main
EOF
APTO=(-o "Dir::Etc::SourceList=$LAB/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o "Dir::State::Lists=$LAB/apt/lists" -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive
say "apt-get update (private source list $LAB/apt/sources.list)"
apt-get "${APTO[@]}" update -qq

if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  rest=()
  for p in "${missing[@]}"; do [ "$p" = qemu-system-x86 ] || rest+=("$p"); done
  if [ ${#rest[@]} -gt 0 ]; then
    apt-get "${APTO[@]}" install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
  fi
  if ! installed qemu-system-x86; then
    QT=()
    dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo && QT=(-t bookworm-backports)
    apt-get "${APTO[@]}" install -y -qq --no-install-recommends "${QT[@]}" qemu-system-x86 >/dev/null
  fi
fi
command -v qemu-system-x86_64 >/dev/null || { say "qemu-system-x86_64 still missing"; exit 1; }

# ---- guest kernel: download + extract the .deb -----------------------------
if ! kernel_ready; then
  KPKG=$(apt-cache "${APTO[@]}" depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$KPKG" ] || { say "cannot resolve linux-image-cloud-amd64"; exit 1; }
  KVER=${KPKG#linux-image-}
  KROOT=$LAB/kernel/$KVER
  if [ ! -f "$KROOT/boot/vmlinuz-$KVER" ]; then
    say "downloading $KPKG"
    rm -f "$LAB/debs/${KPKG}"_*.deb
    (cd "$LAB/debs" && apt-get "${APTO[@]}" -o APT::Sandbox::User=root download -qq "$KPKG")
    rm -rf "$KROOT.tmp"; mkdir -p "$KROOT.tmp"
    dpkg-deb -x "$LAB/debs/${KPKG}"_*.deb "$KROOT.tmp"
    rm -rf "$KROOT"; mv "$KROOT.tmp" "$KROOT"
    rm -f "$LAB/debs/${KPKG}"_*.deb
  fi
  [ -f "$KROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$KROOT" "$KVER"
  cat > "$LAB/kernel.env.tmp" <<EOF
KVER=$KVER
KROOT=$KROOT
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
EOF
  mv "$LAB/kernel.env.tmp" "$LAB/kernel.env"
fi
# shellcheck disable=SC1091
. "$LAB/kernel.env"
say "ready (kernel $KVER in $LAB) in $(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.2f", a-b}')s"
