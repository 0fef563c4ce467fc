#!/usr/bin/env bash
# Boot the real-kernel guest once and run MODE inside it.
#
#   lab/run-guest.sh tests BIN...   guest runs every /opt/bin/guest_* with --test-threads=1
#   lab/run-guest.sh bench BIN...   guest runs each BIN but strata (a bench binary such
#                                   as csi_lifecycle or csi_snapshots) with --bench
#
# BIN...: executables put into the guest's /opt/bin under their own file names (name
# them guest_<x>, strata, or the bench's name; symlinks are followed). Needs lab/prepare.sh first.
# A fresh sparse 8 GiB scratch disk (virtio-blk, serial "scratch") is formatted by the
# guest and mounted on /scratch. The guest console streams to this terminal and to the
# log file. Exit code: the guest's (from its "STRATA_GUEST_EXIT=<n>" line), 99 if it
# never reported one (crash, panic, timeout).
#
# Env: STRATA_LAB_DIR      cache directory (default /var/cache/strata-lab)
#      STRATA_LAB_LOG      console log file (default $STRATA_LAB_DIR/logs/guest-MODE.log)
#      STRATA_LAB_TIMEOUT  seconds before the VM is stopped (default 2700)
#      STRATA_GUEST_ARGS   extra arguments for the guest binaries (e.g. a test filter;
#                          plain words only: they travel on the kernel command line)
#      STRATA_BENCH_*, STRATA_TEST_*, RUST_LOG, RUST_BACKTRACE  forwarded into the guest
#      STRATA_LAB_ACCEL    tcg (default: /dev/kvm here is a paravirtual KVM under which a
#                          stock kernel crawls) or kvm on hosts with real VMX/SVM
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:?usage: run-guest.sh tests|bench BIN...}; shift
case $MODE in tests|bench) ;; *) echo "run-guest.sh: unknown mode '$MODE' (tests|bench)" >&2; exit 2;; esac
LAB=${STRATA_LAB_DIR:-/var/cache/strata-lab}
[ -f "$LAB/kernel.env" ] || { echo "run-guest.sh: $LAB/kernel.env missing: run lab/prepare.sh first" >&2; exit 2; }
# shellcheck disable=SC1091
. "$LAB/kernel.env"
LOG=${STRATA_LAB_LOG:-$LAB/logs/guest-$MODE.log}
TIMEOUT=${STRATA_LAB_TIMEOUT:-2700}
ACCEL=${STRATA_LAB_ACCEL:-tcg}
ts() { date +%s.%N; }
dt() { awk -v a="$(ts)" -v b="$1" 'BEGIN{printf "%.1f", a-b}'; }

RUN=$(mktemp -d "$LAB/run.XXXXXX")
QPID=; TPID=
cleanup() {
  local rc=$?
  # stop what this script started, by PID (qemu runs under `timeout`, which passes it on)
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    echo "run-guest.sh: stopping the VM (pid $QPID)" >&2
    kill -TERM "$QPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$QPID" 2>/dev/null || true
  fi
  if [ -n "$TPID" ] && kill -0 "$TPID" 2>/dev/null; then kill -TERM "$TPID" 2>/dev/null || true; fi
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- initramfs ----------------------------------------------------------------------
T=$(ts)
EXTRA_BINS="$*" MODROOT="$KROOT" STRATA_LAB_DIR="$LAB" "$HERE/mkinitramfs.sh" "$KVER" "$RUN/initrd.cpio"
echo "real-kernel: initramfs built in $(dt "$T")s"

# ---- boot ---------------------------------------------------------------------------
truncate -s 8G "$RUN/scratch.img"
APPEND="console=ttyS0 quiet panic=-1 strata.script=/lab/$MODE.sh"
[ -z "${STRATA_GUEST_ARGS:-}" ] || APPEND="$APPEND strata.args=\"$STRATA_GUEST_ARGS\""
# forward tuning variables into the guest (plain values only: they travel on the kernel command line)
GENV=$(env | grep -E '^(STRATA_BENCH_[A-Z0-9_]*|STRATA_TEST_[A-Z0-9_]*|RUST_LOG|RUST_BACKTRACE)=[^[:space:]"]*$' | sort | tr '\n' ' ' || true)
[ -z "$GENV" ] || APPEND="$APPEND strata.env=\"${GENV% }\""
CPU=(-cpu max); [ "$ACCEL" = kvm ] && CPU=(-cpu host)
mkdir -p "$(dirname "$LOG")"; : > "$LOG"
mkfifo "$RUN/console"
tee -a "$LOG" < "$RUN/console" & TPID=$!
echo "real-kernel: booting $KVER (accel=$ACCEL, 2 vCPU, 2 GiB, timeout ${TIMEOUT}s); console log $LOG"
T=$(ts)
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -machine "q35,accel=$ACCEL" "${CPU[@]}" -smp 2 -m 2G \
  -nographic -no-reboot -nic none \
  -kernel "$VMLINUZ" -initrd "$RUN/initrd.cpio" -append "$APPEND" \
  -drive "if=none,id=scratch,file=$RUN/scratch.img,format=raw,cache=unsafe,discard=unmap" \
  -device virtio-blk-pci,drive=scratch,serial=scratch \
  < /dev/null > "$RUN/console" 2>&1 &
QPID=$!
QRC=0; wait "$QPID" || QRC=$?
QPID=
wait "$TPID" || true; TPID=
BOOT=$(dt "$T")
RC=$(tr -d '\r' < "$LOG" | grep -a -oE '^STRATA_GUEST_EXIT=[0-9]+$' | tail -1 | cut -d= -f2 || true)
if [ -z "$RC" ]; then
  RC=99
  if [ "$QRC" -eq 124 ]; then why="timed out after ${TIMEOUT}s"; else why="qemu exit code $QRC"; fi
  echo "real-kernel: the guest never reported an exit code ($why)"
fi
echo "real-kernel: boot+run+poweroff ${BOOT}s; guest exit code $RC"
exit "$RC"
