#!/usr/bin/env bash
# Training on a Slurm cluster, as in mmseg/mmdet/mmagic's tools/slurm_train.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options]
# srun starts GPUS tasks; each runs tools/train.py with --launcher slurm, which takes its rank from
# Slurm's variables. WORK_DIR is optional (mmseg's script has none, mmdet's needs one): a fourth
# argument that is not an option is the work dir.
source "$(dirname "$0")/_launch.sh"
if [[ $# -ge 4 && $4 != -* ]]; then
    srun_tool "$1" "$2" train.py "$3" --launcher="slurm" --work-dir="$4" "${@:5}"
else
    srun_tool "$1" "$2" train.py "$3" --launcher="slurm" "${@:4}"
fi
