#!/usr/bin/env bash
# One device session's GPU work in a single call (see benchmarks/README.md): the CUDA tests, then the two recipe
# sweeps side by side on the GPU. Expects $OUT (files to bring back) and $REIDLIB_SHARED holding
# data/cuhk03-np-detected/bounding_box_train and weights/osnet_x0_25_msmt17.pth; data/synthetic-a pre-generated.
set -u
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/gpu-out}; SWEEP_S=${SWEEP_S:-420}; mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, torch.cuda.get_device_name(0))"
timeout 200 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_losses.py tests/test_engine.py > "$OUT/pytest.log" 2>&1 &
timeout "$SWEEP_S" python3 benchmarks/recipe_sweep.py benchmarks/sweeps/cuhk03-osnet-msmt17.yaml \
    --out "$OUT/cuhk03" --work /tmp/sweep-cuhk03 --jobs 7 > "$OUT/cuhk03.log" 2>&1 &
timeout "$SWEEP_S" python3 benchmarks/recipe_sweep.py benchmarks/sweeps/synthetic-scratch.yaml \
    --out "$OUT/synth" --work /tmp/sweep-synth --jobs 6 > "$OUT/synth.log" 2>&1 &
wait
tail -3 "$OUT/pytest.log"; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
cd /tmp && find sweep-cuhk03 sweep-synth \( -name metrics.csv -o -name result.json \) | tar czf "$OUT/curves.tgz" -T -
ls -la "$OUT" "$OUT"/*/
