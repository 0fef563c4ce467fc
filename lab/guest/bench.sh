#!/bin/bash
# Runs INSIDE the real-kernel guest (mode "bench"): /opt/bin/csi_lifecycle --bench [args].
set -u
b=/opt/bin/csi_lifecycle
if [ ! -x "$b" ]; then
  echo "strata-guest: no benchmark binary $b in this initramfs"; exit 1
fi
mkdir -p /scratch/work/csi_lifecycle && cd /scratch/work/csi_lifecycle || exit 1
echo "=== real-kernel: csi_lifecycle --bench $*"
"$b" --bench "$@"; rc=$?
echo "STRATA_GUEST_BENCH csi_lifecycle $([ "$rc" -eq 0 ] && echo PASS || echo FAIL) rc=$rc"
exit "$rc"
