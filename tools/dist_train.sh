#!/usr/bin/env bash
# Distributed training with torchrun, as in mmseg/mmdet/mmagic's tools/dist_train.sh:
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node. Without CUDA, each process
# trains on the CPU with the gloo backend (GPUS is then the number of processes).
source "$(dirname "$0")/_launch.sh"
torchrun_tool train.py "$2" "$1" --launcher pytorch "${@:3}"
