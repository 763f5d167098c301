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

# grpcio and grpcio-status for the test that calls the cluster from Python
# (scripts/grpc_errors.py), installed into a folder of their own, outside the clone.
export LEDGER_PYDEPS="${LEDGER_PYDEPS:-$HOME/.cache/ledger-py}"
ensure_python_grpc() {
    if ! command -v python3 >/dev/null; then
        echo "installing python3 (for the test that calls the cluster from Python)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
    fi
    if ! PYTHONPATH="$LEDGER_PYDEPS" python3 -c 'import grpc, grpc_status' 2>/dev/null; then
        echo "installing grpcio and grpcio-status into $LEDGER_PYDEPS" >&2
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
            --target "$LEDGER_PYDEPS" grpcio grpcio-status
    fi
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ledger-target}"
