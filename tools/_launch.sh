# Sourced by dist_{train,test}.sh and slurm_{train,test}.sh: how they start a tools/*.py entry point in
# several processes. Not a command of its own.
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# torchrun_tool SCRIPT NPROC ARGS...: NPROC processes on this node with torchrun (one per GPU; without
# CUDA, CPU processes on gloo). Several nodes: NNODES, NODE_RANK, MASTER_ADDR and PORT on each.
torchrun_tool() {
    local script=$1 nproc=$2
    shift 2
    PYTHONPATH="$TOOLS/..":$PYTHONPATH \
    python -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nproc" \
        --master_port="${PORT:-29500}" \
        "$TOOLS/$script" "$@"
}

# srun_tool PARTITION JOB_NAME SCRIPT ARGS...: GPUS tasks (default 8), GPUS_PER_NODE per node (8),
# CPUS_PER_TASK cores each (5), with any further srun options in SRUN_ARGS.
srun_tool() {
    local partition=$1 job_name=$2 script=$3
    shift 3
    local gpus_per_node=${GPUS_PER_NODE:-8}
    set -x
    # SRUN_ARGS is split into words on purpose: it holds several srun options.
    # shellcheck disable=SC2086
    PYTHONPATH="$TOOLS/..":$PYTHONPATH \
    srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"$gpus_per_node" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="$gpus_per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        python -u "$TOOLS/$script" "$@"
}
