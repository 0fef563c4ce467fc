# Sourced by scripts/test-all, scripts/up and scripts/rocksdb-lib.
#
# STRATA_CACHE: the per-machine cache, outside any clone
#   (${STRATA_CACHE_DIR:-/var/cache/strata}, or ~/.cache/strata if that
#   cannot be written).
# STRATA_ROCKSDB_VERSION: the librocksdb-sys version Cargo.lock pins.
# CARGO_TARGET_DIR (unless already set): $STRATA_CACHE/target, one cargo
#   target directory per machine, reused by every clone and every run.
# ROCKSDB_LIB_DIR + ROCKSDB_STATIC, when scripts/rocksdb-lib has built the
#   library for that version on this machine: librocksdb-sys then links it
#   instead of compiling RocksDB's C++ again (15-30 minutes on 2 cores).
STRATA_CACHE=${STRATA_CACHE_DIR:-/var/cache/strata}
if ! { mkdir -p "$STRATA_CACHE" 2>/dev/null && [ -w "$STRATA_CACHE" ]; }; then
  STRATA_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/strata
  mkdir -p "$STRATA_CACHE"
fi
STRATA_ROCKSDB_VERSION=$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
  "$(dirname "${BASH_SOURCE[0]}")/../Cargo.lock" 2>/dev/null)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STRATA_CACHE/target}
if [ -z "${ROCKSDB_LIB_DIR:-}" ] && [ -n "$STRATA_ROCKSDB_VERSION" ] &&
   [ -f "$STRATA_CACHE/rocksdb-$STRATA_ROCKSDB_VERSION/librocksdb.a" ]; then
  export ROCKSDB_LIB_DIR=$STRATA_CACHE/rocksdb-$STRATA_ROCKSDB_VERSION ROCKSDB_STATIC=1
fi
