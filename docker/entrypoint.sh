#!/usr/bin/env bash
# Entry point of the mesm image: the first argument names a project command, the rest are its flags.
set -euo pipefail
cd /opt/mesm

command="${1:-help}"
shift || true
case "$command" in
    build-iemocap) exec python preprocessing/build_iemocap.py "$@" ;;
    build-mosei) exec python preprocessing/build_mosei.py "$@" ;;
    run) exec python experiments/run.py "$@" ;;
    # torchrun's own flags (--nproc-per-node N) come first, then run.py's.
    torchrun) exec torchrun "$@" ;;
    flops) exec python experiments/flops.py "$@" ;;
    visualize) exec python experiments/visualize.py "$@" ;;
    gpu-check) exec python experiments/gpu_check.py "$@" ;;
    predict) exec mesm predict "$@" ;;
    test) exec python -m pytest "$@" ;;
    python|bash|sh) exec "$command" "$@" ;;
    help|--help|-h)
        echo "usage: docker run --gpus all [volumes] mesm:gpu COMMAND [ARGS...]"
        echo "commands: build-iemocap build-mosei run torchrun flops visualize gpu-check predict test python bash"
        echo "see docker/README.md for copy-paste examples"
        ;;
    *) echo "unknown command '$command' (try: help)" >&2; exit 2 ;;
esac
