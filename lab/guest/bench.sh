#!/bin/bash
# Runs INSIDE the real-kernel guest (mode "bench"): every benchmark binary in /opt/bin
# (each one but strata; scripts/real-kernel stages exactly one) with --bench [args],
# in /scratch/work/<name>. Exit code: 0 when every one succeeded, 1 otherwise.
set -u
shopt -s nullglob
bins=()
for b in /opt/bin/*; do [ "${b##*/}" = strata ] || bins+=("$b"); done
if [ ${#bins[@]} -eq 0 ]; then
  echo "strata-guest: no benchmark binary in /opt/bin of this initramfs"; exit 1
fi
fail=0
for b in "${bins[@]}"; do
  name=${b##*/}
  mkdir -p "/scratch/work/$name" && cd "/scratch/work/$name" || exit 1
  echo "=== real-kernel: $name --bench $*"
  "$b" --bench "$@"; rc=$?
  [ "$rc" -eq 0 ] || fail=1
  echo "STRATA_GUEST_BENCH $name $([ "$rc" -eq 0 ] && echo PASS || echo FAIL) rc=$rc"
done
exit "$fail"
