#!/usr/bin/env bash
# Testing on a Slurm cluster, as in mmseg/mmdet/mmagic's tools/slurm_test.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# srun starts GPUS tasks; each runs tools/test.py with --launcher slurm.
source "$(dirname "$0")/_launch.sh"
srun_tool "$1" "$2" test.py "$3" "$4" --launcher="slurm" "${@:5}"
