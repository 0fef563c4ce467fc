#!/usr/bin/env bash
# Build the guest initramfs for the real-kernel lab: no udev, no host filesystem sharing.
#
#   [MODROOT=dir] [EXTRA_BINS='a b'] [EXTRA_FILES='c d'] mkinitramfs.sh <kernel-version> <out.cpio>
#
# The result is two concatenated newc archives (the kernel unpacks both):
#   base     busybox-static, the host's lvm2 / thin-provisioning-tools / e2fsprogs /
#            xfsprogs / util-linux tools with their shared libraries, the dm / xfs /
#            virtio / loop kernel modules, lvm.conf, and /init. Cached in
#            $STRATA_LAB_DIR/initramfs/ under a key of this script, the kernel version
#            and the host package versions, so it is built once per machine.
#   overlay  EXTRA_BINS (copied to /opt/bin under their own names, with their shared
#            libraries: the strata binary links liblvm2cmd, libdevmapper, ...), EXTRA_FILES
#            (copied to the same absolute path), and lab/guest/*.sh (as /lab/*.sh).
#            Uncompressed: the test binaries are large and the guest unpacks it fastest so.
#   MODROOT: root holding lib/modules/<kver> (default /; e.g. the dpkg-deb -x'd kernel .deb)
#
# Guest /init: mounts proc/sys/dev/run/tmp, loads the modules, formats the virtio disk
# with serial "scratch" as ext4 and mounts it on /scratch, exports
#   PATH=/opt/bin:/usr/sbin:/usr/bin:/bb STRATA_BIN=/opt/bin/strata STRATA_SCRATCH=/scratch STRATA_GUEST=1
# exports the variables of strata.env="K=V ...", runs `bash <strata.script> <strata.args>`
# from the kernel command line, prints
# "STRATA_GUEST_EXIT=<code>" (the machine-readable exit line), syncs and powers off.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODROOT=$(readlink -f "${MODROOT:-/}")
KVER=${1:?kernel version}; OUTF=${2:?output file}
LAB=${STRATA_LAB_DIR:-/var/cache/strata-lab}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# Kernel modules the guest loads at boot (their dependencies come along).
MODULES="virtio_pci virtio_blk dm_mod dm_bufio dm_persistent_data dm_bio_prison dm_thin_pool dm_snapshot dm_zero dm_mirror xfs loop ext4 crc32c_generic libcrc32c"
# Host programs in the guest (with their shared libraries).
TOOLS="busybox bash kmod modprobe insmod lsmod depmod
  lvm dmsetup fsadm lvmconfig
  pdata_tools thin_check thin_dump thin_repair thin_restore thin_metadata_size
  mke2fs mkfs.ext4 e2fsck fsck.ext4 resize2fs tune2fs dumpe2fs debugfs
  mkfs.xfs xfs_growfs xfs_db xfs_io xfs_spaceman xfs_repair xfs_info xfs_admin
  mount umount blkid blockdev lsblk losetup findmnt wipefs fsck fstrim nsenter mountpoint fallocate
  sha256sum dd sync stat readlink date df truncate sleep cat ls mkdir rm cp mv ln
  sed grep awk head tail sort uniq wc tr cut env timeout nproc id uname"
LVM_LINKS="pvcreate pvremove pvs pvscan pvdisplay pvchange pvresize pvmove
  vgcreate vgremove vgs vgscan vgdisplay vgchange vgextend vgreduce vgrename vgck
  lvcreate lvremove lvs lvscan lvdisplay lvextend lvreduce lvresize lvchange lvrename lvconvert"

# ---------------------------------------------------------------------------------------
copy_file() { # R=root; copy a path (content followed through symlinks) keeping its /usr-merged location
  local src=$1 dst want
  dst=$(readlink -f "$src"); dst=${dst#/}
  case $dst in bin/*|sbin/*|lib/*|lib64/*) dst=usr/$dst;; esac
  mkdir -p "$R/$(dirname "$dst")"; [ -e "$R/$dst" ] || cp -L "$src" "$R/$dst"
  # keep the name that was asked for too (thin_check -> pdata_tools, mkfs.ext4 -> mke2fs)
  want=${src#/}; case $want in bin/*|sbin/*|lib/*|lib64/*) want=usr/$want;; esac
  if [ "$want" != "$dst" ] && [ ! -e "$R/$want" ]; then
    mkdir -p "$R/$(dirname "$want")"; ln -s "/$dst" "$R/$want"
  fi
}
copy_libs() { # shared libraries of an executable (ldd fails on scripts and static binaries: fine)
  local lib
  { ldd "$1" 2>/dev/null || true; } | { grep -oE '/[^ ]+' || true; } | while read -r lib; do copy_file "$lib"; done
}
copy_tool() {
  local b p
  for b in "$@"; do
    p=$(command -v "$b" || true); [ -n "$p" ] || { echo "mkinitramfs: missing host program $b" >&2; exit 1; }
    copy_file "$p"; copy_libs "$p"
  done
}
pkgver() { dpkg-query -W -f='${Package}=${Version} ' "$@" 2>/dev/null || true; }

# ---- base archive (cached) --------------------------------------------------------------
KEY=$( { cat "$0"; echo "$KVER $MODROOT"; pkgver lvm2 dmsetup libdevmapper1.02.1 thin-provisioning-tools \
         e2fsprogs xfsprogs util-linux mount busybox-static bash kmod libc6 coreutils;
         ls -l --time-style=+%s "$MODROOT/lib/modules/$KVER/modules.dep" 2>/dev/null; } | sha256sum | cut -c1-16)
mkdir -p "$LAB/initramfs"
BASE=$LAB/initramfs/base-$KVER-$KEY.cpio.gz
if [ -s "$BASE" ]; then
  touch "$BASE"
else
  R=$(mktemp -d /tmp/strata-initramfs.XXXXXX); trap 'rm -rf "$R" "$BASE.tmp.$$"' EXIT
  mkdir -p "$R"/usr/{bin,sbin,lib,lib64} "$R"/{proc,sys,dev,run,tmp,mnt,scratch,root,etc/lvm,bb,opt/bin,lab}
  ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
  # shellcheck disable=SC2086
  copy_tool $TOOLS
  [ -e "$R/usr/bin/sh" ] || ln -s bash "$R/usr/bin/sh"   # xfs_info, fsadm are /bin/sh scripts
  for t in $LVM_LINKS; do ln -sf lvm "$R/usr/sbin/$t"; done
  cp /etc/mke2fs.conf "$R/etc/" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
  printf 'root:x:0:\ndisk:x:6:\n' > "$R/etc/group"
  ln -s /proc/self/mounts "$R/etc/mtab"
  # kernel modules + their dependencies
  [ -e "$MODROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$MODROOT" "$KVER"
  for m in $MODULES; do
    modprobe -d "$MODROOT" -S "$KVER" --show-depends "$m" || { echo "mkinitramfs: no module $m" >&2; exit 1; }
  done | awk '$1=="insmod"{print $2}' | sort -u | while read -r ko; do
    rel=${ko#"${MODROOT%/}"}; rel=/lib/${rel#*/lib/}
    mkdir -p "$R/usr$(dirname "$rel")"; cp "$ko" "$R/usr$rel"
  done
  cp "$MODROOT"/lib/modules/"$KVER"/modules.{order,builtin,builtin.modinfo} "$R/usr/lib/modules/$KVER/" 2>/dev/null || true
  depmod -b "$R" "$KVER"
  echo "$MODULES" > "$R/etc/strata-modules"
  # LVM without udev: libdevmapper creates the /dev nodes and /dev/VG/LV links itself
  cat > "$R/etc/lvm/lvm.conf" <<'EOF'
activation { udev_sync = 0  udev_rules = 0  monitoring = 0 }
devices { obtain_device_list_from_udev = 0  external_device_info_source = "none" }
global { use_lvmpolld = 0 }
EOF
  cat > "$R/init" <<'EOF'
#!/usr/bin/busybox sh
/usr/bin/busybox --install -s /bb
export PATH=/opt/bin:/usr/sbin:/usr/bin:/bb HOME=/root
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp; mkdir -p /run/lock/lvm /run/lvm
exit_line() { echo "STRATA_GUEST_EXIT=$1"; sync; poweroff -f; sleep 60; }
echo "strata-guest: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print $2/1024 " MiB"}' /proc/meminfo), uptime $(cut -d' ' -f1 /proc/uptime)s"
# shellcheck disable=SC2046
modprobe -a $(cat /etc/strata-modules) || { echo "strata-guest: modprobe failed"; exit_line 97; }
DISK=
for i in $(seq 100); do
  for b in /sys/block/vd*; do [ "$(cat "$b/serial" 2>/dev/null)" = scratch ] && DISK=/dev/${b##*/}; done
  [ -n "$DISK" ] && [ -b "$DISK" ] && break; DISK=; sleep 0.1
done
[ -n "$DISK" ] || { echo "strata-guest: no virtio disk with serial 'scratch'"; ls /sys/block; exit_line 98; }
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$DISK" && mount "$DISK" /scratch \
  || { echo "strata-guest: cannot format/mount $DISK"; exit_line 98; }
mkdir -p /scratch/tmp
export STRATA_BIN=/opt/bin/strata STRATA_SCRATCH=/scratch STRATA_GUEST=1 TMPDIR=/scratch/tmp
export LVM_SUPPRESS_FD_WARNINGS=1 RUST_BACKTRACE=1
for kv in $(sed -n 's/.*strata\.env="\([^"]*\)".*/\1/p' /proc/cmdline); do export "$kv"; done
script=$(sed -n 's/.*strata\.script=\([^ ]*\).*/\1/p' /proc/cmdline)
args=$(sed -n 's/.*strata\.args="\([^"]*\)".*/\1/p' /proc/cmdline)
[ -f "$script" ] || { echo "strata-guest: no guest script '$script' (kernel argument strata.script=)"; exit_line 96; }
echo "strata-guest: scratch $DISK on /scratch; running $script $args (uptime $(cut -d' ' -f1 /proc/uptime)s)"
cd /scratch
# shellcheck disable=SC2086
bash "$script" $args; rc=$?
cd /; sync; umount /scratch 2>/dev/null
exit_line "$rc"
EOF
  chmod +x "$R/init"
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$BASE.tmp.$$"
  mv "$BASE.tmp.$$" "$BASE"
  # drop base archives of other script/package versions not used for an hour
  find "$LAB/initramfs" -name 'base-*.cpio.gz' ! -path "$BASE" -mmin +60 -delete 2>/dev/null || true
  rm -rf "$R"; trap - EXIT
  echo "mkinitramfs: built base $BASE ($(du -h "$BASE" | cut -f1))"
fi

# ---- overlay archive: the project's binaries and the guest scripts ----------------------
R=$(mktemp -d /tmp/strata-initramfs.XXXXXX); trap 'rm -rf "$R" "$R.overlay" "$OUTF.tmp"' EXIT
mkdir -p "$R/opt/bin" "$R/lab"
for x in ${EXTRA_BINS:-}; do
  [ -x "$x" ] || { echo "mkinitramfs: EXTRA_BINS: $x is not an executable" >&2; exit 1; }
  cp -L "$x" "$R/opt/bin/"
  copy_libs "$x"
done
for f in ${EXTRA_FILES:-}; do
  mkdir -p "$R$(dirname "$f")"; cp -a "$f" "$R$f"
done
cp "$HERE"/guest/*.sh "$R/lab/"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$R.overlay"
# the kernel looks for the next archive only at a 4-byte aligned offset (zeros are skipped)
pad=$(( (4 - $(stat -c %s "$BASE") % 4) % 4 ))
{ cat "$BASE"; head -c "$pad" /dev/zero; cat "$R.overlay"; } > "$OUTF.tmp"
rm -f "$R.overlay"; mv "$OUTF.tmp" "$OUTF"
echo "mkinitramfs: $OUTF ($(du -h "$OUTF" | cut -f1); /opt/bin: $(cd "$R/opt/bin" && ls | tr '\n' ' '))"
