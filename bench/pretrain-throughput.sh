#!/usr/bin/env bash
# Training throughput of the pretraining recipes through the real entry point (blip pretrain), and the peak memory of
# the base recipe at batch 8 with and without gradient checkpointing. Prints a markdown table.
#
#   bench/pretrain-throughput.sh [THREADS] [BASE_STEPS]
#
# THREADS: torch threads (default 2). BASE_STEPS: optimizer steps of each base run (default 4; the first is left out
# of the rate, as are the tiny recipe's first 20). Images/s is the mean over the timed steps as the trainer logs it
# (images_per_s per logged step); peak RSS is the process's VmHWM at the end (model, AdamW state, queues, activations).
# The base recipe names a hub tokenizer; offline it uses the fixture tokenizer (the same BERT vocabulary).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
base_steps=${2:-4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tokenizer=${BLIP_FIXTURES_DIR:-../shared/fixtures/hf-blip}/BlipForConditionalGeneration

dotnet build src/BlipSharp.Cli -c Release -v q -nologo >/dev/null
blip=src/BlipSharp.Cli/bin/Release/net10.0/blip
$blip synth --out "$work/world" --seed 0 --pretrain-images 800 --human-images 0 --val-images 0 --test-images 0 --vqa-images 0 >/dev/null

# mean images_per_s over logged steps after $2, and the last peak_rss_mib, of a run folder's metrics.jsonl
summary() {
  awk -v skip="$2" -F'[,:]' '{
      gsub(/[{} ]/, "")
      for (i = 1; i < NF; i++) {
        if ($i == "\"step\"") step = $(i + 1)
        if ($i == "\"images_per_s\"") rate = $(i + 1)
        if ($i == "\"peak_rss_mib\"") rss = $(i + 1)
      }
      if (step > skip) { sum += rate; n++ }
    } END { printf "%.2f | %.0f", sum / n, rss }' "$1/metrics.jsonl"
}

echo "| recipe | image | batch | ViT checkpointing | steps timed | images/s | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|"

$blip pretrain --config configs/pretrain-tiny.json --out "$work/tiny" --threads "$threads" \
  --set "data.train_files=[\"$work/world/pretrain.json\"]" --set "model.tokenizer=$work/world/tokenizer" --set model.vision_init=null \
  --set train.max_steps=120 --set output.log_every=10 --set output.checkpoint_every=0 --set output.checkpoint_at_epoch_end=false 2>/dev/null >/dev/null
echo "| pretrain-tiny | 32 | 32 | no | 100 | $(summary "$work/tiny" 20) |"

for ckpt in false true; do
  $blip pretrain --config configs/pretrain-base.json --out "$work/base-$ckpt" --threads "$threads" \
    --set "data.train_files=[\"$work/world/pretrain.json\"]" --set "model.tokenizer=$tokenizer" --set model.vision_init=null --set data.batch_size=8 \
    --set data.workers=2 --set train.gradient_checkpointing=$ckpt --set "train.max_steps=$base_steps" --set output.log_every=1 \
    --set output.checkpoint_every=0 --set output.checkpoint_at_epoch_end=false 2>/dev/null >/dev/null
  echo "| pretrain-base | 224 | 8 | $([ $ckpt = true ] && echo yes || echo no) | $((base_steps - 1)) | $(summary "$work/base-$ckpt" 1) |"
done
