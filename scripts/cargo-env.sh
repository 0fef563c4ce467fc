# Sourced by scripts/test-all and scripts/up: one cargo target directory per
# machine, outside the clone, so that RocksDB's C++ library (librocksdb-sys,
# 15-30 minutes on 2 cores) is built once per machine and reused by every
# clone and every run. A fresh machine builds it on the first run.
# Override with CARGO_TARGET_DIR, or move the cache with STRATA_CACHE_DIR.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  _strata_cache=${STRATA_CACHE_DIR:-/var/cache/strata}
  if ! { mkdir -p "$_strata_cache" 2>/dev/null && [ -w "$_strata_cache" ]; }; then
    _strata_cache=${XDG_CACHE_HOME:-$HOME/.cache}/strata
    mkdir -p "$_strata_cache"
  fi
  export CARGO_TARGET_DIR=$_strata_cache/target
  unset _strata_cache
fi
# RocksDB's static library, when scripts/rocksdb-lib has built it on this
# machine: librocksdb-sys links it instead of compiling RocksDB again.
_strata_rocksdb=$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
  "$(dirname "${BASH_SOURCE[0]}")/../Cargo.lock" 2>/dev/null)
for _strata_dir in "${STRATA_CACHE_DIR:-/var/cache/strata}" "${XDG_CACHE_HOME:-$HOME/.cache}/strata"; do
  if [ -z "${ROCKSDB_LIB_DIR:-}" ] && [ -n "$_strata_rocksdb" ] &&
     [ -f "$_strata_dir/rocksdb-$_strata_rocksdb/librocksdb.a" ]; then
    export ROCKSDB_LIB_DIR=$_strata_dir/rocksdb-$_strata_rocksdb ROCKSDB_STATIC=1
  fi
done
unset _strata_rocksdb _strata_dir
