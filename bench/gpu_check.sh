#!/usr/bin/env bash
# GPU checks of sdn, for a machine with CUDA (e.g. a lent device machine): one short script, about 5 minutes.
# It needs torch with CUDA where it runs; results go to ${OUT:-gpu_check} (logs) and the last lines of output.
#   1. the training step of every mode, on the GPU, with --amp fp16, --amp bf16 and --channels_last, then
#      --test (the test path on the GPU), on a small generated dataset;
#   2. the same under torchrun with 2 processes when 2 GPUs are visible (DDP over NCCL);
#   3. sdn bench train sdn-cost --device cuda (speed options, a full-SDN iteration vs a baseline one).
# Record what it prints in docs/performance.md, with the card.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPU(s)')" || exit 1
data="$out/data"
python -m sdn synth --out "$data" --classes 4 --train-per-class 16 --val-per-class 4 > "$out/synth.log" 2>&1 || { tail "$out/synth.log"; exit 1; }
common=(--root_path "$data" --video_path jpg --annotation_path kinetics.json --n_classes 4 --num_places_classes 4
        --model resnet --model_depth 18 --resnet_shortcut A --sample_size 112 --sample_duration 16 --batch_size 8
        --val_batch_size 8 --n_threads 4 --n_epochs 1 --checkpoint 1 --learning_rate 0.01 --no_progress
        --place_pred_path "$data/places" --human_dets_path "$data/dets" --test --test_subset val)
declare -A modes=(
  [baseline]="--dataset kinetics --is_mask_adv"
  [place_adv]="--dataset kinetics_adv --is_place_adv --is_place_soft --is_mask_adv --warm_up_epochs 0"
  [full]="--dataset kinetics_adv_msk --is_place_adv --is_place_soft --is_mask_entropy --warm_up_epochs 0"
)
status=0
for mode in baseline place_adv full; do
  for speed in "--amp fp16" "--amp bf16 --channels_last" "--channels_last --cudnn_benchmark"; do
    name="$mode-${speed//[ -]/_}"
    if python -m sdn train "${common[@]}" ${modes[$mode]} $speed --result_path "runs/$name" > "$out/$name.log" 2>&1; then
      echo "ok   $name"
    else
      echo "FAIL $name: $(grep -m1 -i 'error' "$out/$name.log")"; status=1
    fi
  done
done
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  for mode in baseline full; do
    if torchrun --standalone --nproc_per_node 2 -m sdn train "${common[@]}" ${modes[$mode]} \
         --result_path "runs/ddp-$mode" > "$out/ddp-$mode.log" 2>&1; then echo "ok   ddp-$mode"
    else echo "FAIL ddp-$mode: $(grep -m1 -i 'error' "$out/ddp-$mode.log")"; status=1; fi
  done
else
  echo "skip ddp: one GPU visible"
fi
python -m sdn bench train sdn-cost --device cuda --batch_size 16 --out "$out/bench" 2>&1 | tee "$out/bench.log" | tail -25
exit $status
