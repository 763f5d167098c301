# Shared by the scripts: installs what a fresh Debian machine lacks and points cargo at a
# target directory outside the clone, so rebuilds after a fresh clone are incremental.
set -euo pipefail

ensure_system_packages() {
    # librocksdb-sys generates its bindings with bindgen, which needs libclang.
    # libclang-cpp (present on some machines without libclang) does not count.
    if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
        && ! compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null; then
        echo "installing libclang-dev (needed to build RocksDB bindings)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
    fi
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
