#!/usr/bin/env bash
# Distributed testing with torchrun, as in mmseg/mmdet/mmagic's tools/dist_test.sh:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node. Without CUDA, each process
# evaluates on the CPU with the gloo backend (GPUS is then the number of processes).
source "$(dirname "$0")/_launch.sh"
torchrun_tool test.py "$3" "$1" "$2" --launcher pytorch "${@:4}"
