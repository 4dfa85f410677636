#!/usr/bin/env bash
# The merge of a Slurm CapFilt run (docs/capfilt/slurm-capfilt.sh): checks that the committed chunks cover every input
# record exactly once and writes the bootstrapped dataset into the same folder. Submit it after the parts:
#
#   jid=$(sbatch --parsable docs/capfilt/slurm-capfilt.sh)
#   sbatch --dependency=afterok:$jid docs/capfilt/slurm-capfilt-merge.sh
#
# If a part fails for good, the dependency can never be satisfied and Slurm cancels this job (--kill-on-invalid-dep);
# rerun the failed parts (PARTS=8 sbatch --array=3,5 ...) and submit the merge again, with or without the dependency.
#
#SBATCH --job-name=capfilt-merge
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --output=capfilt-merge-%j.log
set -euo pipefail

DATA=${DATA:-/shared/blip}
OUT=${OUT:-$DATA/capfilt/run-1}

blip capfilt merge "$OUT" --json
