#!/bin/bash
# Runs INSIDE the real-kernel guest (mode "tests"): every /opt/bin/guest_* test binary,
# one after the other, each with --test-threads=1 (the libtest output is this group's
# test report). Extra arguments are passed to every binary (e.g. a test name filter).
# Exit code: 0 when every binary passed, 1 otherwise (or when there is none).
set -u
shopt -s nullglob
up() { cut -d' ' -f1 /proc/uptime; }
bins=(/opt/bin/guest_*)
if [ ${#bins[@]} -eq 0 ]; then
  echo "strata-guest: no /opt/bin/guest_* test binaries"; exit 1
fi
fail=0; summary=()
for b in "${bins[@]}"; do
  name=${b##*/}
  work=/scratch/work/$name; mkdir -p "$work"
  echo "=== real-kernel: $name --test-threads=1 $*"
  t0=$(up)
  (cd "$work" && "$b" --test-threads=1 "$@"); rc=$?
  dt=$(awk -v a="$(up)" -v b="$t0" 'BEGIN{printf "%.1f", a-b}')
  if [ "$rc" -eq 0 ]; then st=PASS; else st=FAIL; fail=1; fi
  summary+=("STRATA_GUEST_TEST $name $st rc=$rc ${dt}s")
done
echo "=== real-kernel test binaries:"
printf '%s\n' "${summary[@]}"
exit "$fail"
