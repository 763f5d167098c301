# Shared by the scripts: installs what a fresh Debian machine lacks and points cargo at a
# target directory outside the clone, so rebuilds after a fresh clone are incremental.
set -euo pipefail

ensure_system_packages() {
    # librocksdb-sys generates its bindings with bindgen, which needs libclang.
    if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
        echo "installing libclang-dev (needed to build RocksDB bindings)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
    fi
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
