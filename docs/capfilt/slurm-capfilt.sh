#!/usr/bin/env bash
# BLIP's CapFilt over a large web dataset as a Slurm job array: array task i runs part i/N of one `blip capfilt` run,
# all writing into one shared output folder (a POSIX filesystem with atomic rename: NFS, Lustre, GPFS, CephFS).
# See docs/capfilt-scale-out.md. Submit the parts, then the merge as a job that starts when every part succeeded:
#
#   jid=$(sbatch --parsable docs/capfilt/slurm-capfilt.sh)
#   sbatch --dependency=afterok:$jid docs/capfilt/slurm-capfilt-merge.sh
#
# A task that is killed, preempted, requeued or resubmitted runs the same command again: it skips the chunks already
# committed and redoes at most the one it was in. To rerun some parts of this 8-part run (PARTS keeps N = 8; the
# array's own task count would be 2):
#
#   PARTS=8 sbatch --array=3,5 docs/capfilt/slurm-capfilt.sh
#
# N may also change between submissions (chunks are numbered over the whole input, not per part): `sbatch
# --array=0-15 docs/capfilt/slurm-capfilt.sh` finishes whatever an 8-part run left, in 16 parts. Do not run two
# different N on one folder at the same time.
#
#SBATCH --job-name=capfilt
#SBATCH --array=0-7
#SBATCH --cpus-per-task=32
#SBATCH --mem=48G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --output=capfilt-%A_%a.log
set -euo pipefail

DATA=${DATA:-/shared/blip}           # models, web shards and COCO, the same absolute paths on every node
OUT=${OUT:-$DATA/capfilt/run-1}       # the shared output folder
PARTS=${PARTS:-$SLURM_ARRAY_TASK_COUNT}

# Five minutes before the time limit, put this task back in the queue rather than let it end as TIMEOUT (which would
# leave the merge waiting on a failed dependency). Slurm stops the running command; the requeued task resumes.
requeue() {
  echo "capfilt part $SLURM_ARRAY_TASK_ID/$PARTS: time limit near, requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

# Every part must give the same inputs (in the same order), models and settings: capfilt.json in $OUT records them
# and a part with other settings is refused. --shard, --threads and --decode-threads may differ.
blip capfilt \
  --captioner "$DATA/models/capfilt-captioner" \
  --filter "$DATA/models/capfilt-filter" \
  --input "$DATA"/web/shards/web-*.tar \
  --human "$DATA/coco/coco_karpathy_train.json" \
  --out "$OUT" \
  --chunk-size 1000 \
  --shard "$SLURM_ARRAY_TASK_ID/$PARTS" \
  --threads "$SLURM_CPUS_PER_TASK" \
  --decode-threads 4 &
# In the background and waited for, so that the USR1 trap runs while blip works; the task's exit code is blip's
# (0: part complete; 1: stopped early by a signal, rerun to go on; 2: bad option, inputs or settings, see the log).
wait $!
