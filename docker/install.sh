#!/usr/bin/env bash
# The one install of mesm's pinned environment, shared by CI (.ci/run) and the Docker image
# (docker/Dockerfile), so both get exactly the versions pinned in setup.cfg and pyproject.toml.
#
# Usage: docker/install.sh [--cuda] [--no-dev]
#   --cuda    also install the `cuda` extra (spconv, the CUDA sparse-convolution backend)
#   --no-dev  leave out the test/lint tools (pytest, scikit-image, ruff, mypy)
set -euo pipefail
cd "$(dirname "$0")/.."

sync_args=()
for arg in "$@"; do
    case "$arg" in
        --cuda) sync_args+=(--extra cuda) ;;
        --no-dev) sync_args+=(--no-dev) ;;
        *) echo "install.sh: unknown option '$arg' (expected --cuda or --no-dev)" >&2; exit 2 ;;
    esac
done

if ! command -v uv >/dev/null 2>&1; then
    # uv, not pip, installs the project: pip may be configured with a CPU-only torch wheel that
    # breaks torchvision, and uv honours the override of facenet-pytorch's stale pins.
    python3 -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
fi
uv --version
# uv.lock is not tracked (it records download addresses); uv resolves from the exact pins.
uv sync ${sync_args[@]+"${sync_args[@]}"}
