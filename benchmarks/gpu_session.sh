#!/usr/bin/env bash
# All the GPU work in one prepared call (about 8-10 minutes of GPU time; see benchmarks/README.md).
#
#   benchmarks/gpu_session.sh --prepare   # HERE, on the CPU machine, once: fills .gpu-carry/ (git-ignored)
#   bash benchmarks/gpu_session.sh        # THERE, as the device call: run(command=..., carry=[".gpu-carry"])
#
# --prepare copies what the GPU machine (no internet, no ../shared) needs into .gpu-carry/:
#   shared/data/cuhk03-np-detected/  a subset of CUHK03-NP by whole identities (TRAIN_FRACTION, TEST_FRACTION of the
#                                    ids; the 56 MiB of the full set plus the repo exceed the 64 MiB a call carries);
#                                    SUBSET.txt inside says what was kept
#   peer-site/                       torchreid 0.2.5, yacs, gdown, bs4, soupsieve from .peer-venv (the GPU image has
#                                    torch, opencv, h5py, tensorboard); put on PYTHONPATH for the peer only
#   wheels/ (optional, yours)        *.whl installed with pip --no-index into /tmp/site before anything runs, e.g.
#                                    papermill + nbclient + nbformat + ipykernel and their missing dependencies, which
#                                    the ./run_all.sh path of step 3 needs (the GPU image has none of them). Nothing is
#                                    ever fetched from an index: PIP_NO_INDEX=1 for the whole run
#   torch-home/ (optional, yours)    ImageNet files as under $TORCH_HOME (hub/checkpoints/resnet50-0676ba61.pth, ...);
#                                    models whose file is absent start from random init in step 3
#
# The device run, in order (each step under its own timeout, about 9.5 minutes in all; every log and report is
# written into $OUT as it goes, so a step cut off by its timeout, or the whole call cut off, keeps what it measured):
#   1. benchmarks/gpu_throughput.py: every model's training and extraction img/s, and torchreid's (eager); the report
#      ($OUT/gpu_throughput.md/.json) is rewritten after every measurement ("complete": false until the end)
#   2. benchmarks/gpu_throughput.py --compile --no-peer --models osnet_x0_25 (torch.compile beside eager), report in
#      $OUT/compile/
#   3. a short paper-profile run on the CUHK03-NP subset laid out as Market-1501 (benchmarks/gpu_paper_profile.py:
#      2 epochs, the three models, pretrained only where torch-home/ has the file): ./run_all.sh on that profile when
#      papermill + ipykernel import, else python3 -m reidlib.train for each model with the same recipe; logs in
#      $OUT/paper/; at the same time every CUDA test (GPU_TESTS below: each test that is skipped without CUDA, which
#      tests/test_gpu_throughput.py checks) -> $OUT/pytest.log
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.gpu-carry
# every test that needs CUDA: the files that hold one, and a -k expression matching exactly those tests' names
GPU_TESTS=(tests/test_losses.py tests/test_engine.py tests/test_data_cached.py tests/test_engine_gpu_path.py
           tests/test_engine_ddp.py)
GPU_K="on_cuda or on_the_gpu"

if [ "${1:-}" = "--prepare" ]; then
  set -e
  SHARED=${REIDLIB_SHARED:-$ROOT/../shared}
  mkdir -p "$ROOT/.git/info"
  grep -qx '/.gpu-carry/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu-carry/' >> "$ROOT/.git/info/exclude"
  rm -rf "$CARRY/shared" "$CARRY/peer-site"
  mkdir -p "$CARRY/shared/data" "$CARRY/peer-site"
  TRAIN_FRACTION=${TRAIN_FRACTION:-0.6} TEST_FRACTION=${TEST_FRACTION:-0.4} \
  "$ROOT/.venv/bin/python" - "$SHARED/data/cuhk03-np-detected" "$CARRY/shared/data/cuhk03-np-detected" <<'EOF'
import os, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
fractions = {"bounding_box_train": float(os.environ["TRAIN_FRACTION"])}
fractions["query"] = fractions["bounding_box_test"] = float(os.environ["TEST_FRACTION"])
lines = [f"A subset of {src} by whole identities (the first ids in sorted order), made by gpu_session.sh --prepare:"]
test_ids = sorted({p.name.split("_")[0] for p in (src / "query").iterdir()})
for split, frac in fractions.items():
    files = sorted(p for p in (src / split).iterdir() if p.is_file())
    ids = sorted({p.name.split("_")[0] for p in files}) if split == "bounding_box_train" else test_ids
    keep = set(ids[: max(1, round(len(ids) * frac))])
    (dst / split).mkdir(parents=True)
    kept = [p for p in files if p.name.split("_")[0] in keep]
    for p in kept:
        shutil.copy2(p, dst / split / p.name)
    lines.append(f"{split}: {len(kept)} of {len(files)} images, {len(keep)} of {len(ids)} ids")
(dst / "SUBSET.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
  site=$(echo "$ROOT"/.peer-venv/lib/python3*/site-packages)
  proj=$(echo "$ROOT"/.venv/lib/python3*/site-packages)
  [ -d "$site/torchreid" ] || { echo "no $site/torchreid: run benchmarks/peer_speed.py --quick once first" >&2; exit 1; }
  for p in "$site"/torchreid "$site"/torchreid-*.dist-info "$site"/yacs "$site"/yacs-*.dist-info "$site"/gdown \
           "$site"/gdown-*.dist-info "$proj"/bs4 "$proj"/beautifulsoup4-*.dist-info "$proj"/soupsieve \
           "$proj"/soupsieve-*.dist-info; do
    [ -e "$p" ] && cp -r "$p" "$CARRY/peer-site/"
  done
  find "$CARRY" -name __pycache__ -prune -exec rm -rf {} +
  du -sh "$CARRY"/*; echo "the working tree plus .gpu-carry must stay under 64 MiB"
  exit 0
fi

export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_NO_INDEX=1
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT/paper" "$OUT/compile"
TP_S=${TP_S:-170}; COMPILE_S=${COMPILE_S:-170}; PAPER_S=${PAPER_S:-200}; TEST_S=${TEST_S:-200}
export REIDLIB_SHARED=${REIDLIB_SHARED:-$CARRY/shared}
[ -d "$CARRY/torch-home" ] && export TORCH_HOME=$CARRY/torch-home
exec > >(tee "$OUT/session.log") 2>&1
if compgen -G "$CARRY/wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$CARRY"/wheels/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} \
    || echo "the wheels in $CARRY/wheels did not install (see above); going on without them"
fi
nvidia-smi -L
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'timm', timm.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), \
'capability', torch.cuda.get_device_capability(0))"
cat "$REIDLIB_SHARED/data/cuhk03-np-detected/SUBSET.txt" 2>/dev/null

echo "== 1. throughput, ours + peer (eager) $(date +%T)"
PEER_PY=python3
[ -d "$CARRY/peer-site" ] || echo "no $CARRY/peer-site: the peer run will fail (recorded in the report)"
PYTHONPATH=$CARRY/peer-site${PYTHONPATH:+:$PYTHONPATH} timeout "$TP_S" python3 benchmarks/gpu_throughput.py \
  --device cuda --peer-python "$PEER_PY" --work /tmp/gpu-throughput --out "$OUT"
echo "step 1 exit $?"
echo "== 2. throughput with torch.compile, osnet_x0_25 $(date +%T)"
timeout "$COMPILE_S" python3 benchmarks/gpu_throughput.py --device cuda --compile --no-peer --models osnet_x0_25 \
  --work /tmp/gpu-throughput-compile --out "$OUT/compile"
echo "step 2 exit $?"

echo "== 3. short paper-profile run + CUDA tests $(date +%T)"
timeout "$TEST_S" python3 -m pytest -q -rs -p no:cacheprovider -k "$GPU_K" "${GPU_TESTS[@]}" \
  > "$OUT/pytest.log" 2>&1 &
TESTS=$!
PAPER=/tmp/gpu-paper
rm -rf "$PAPER"
python3 benchmarks/gpu_paper_profile.py "$OUT/paper/gpu-paper-check.yaml" --epochs 2 --work-dir "$PAPER/work" \
  --market-tree "$PAPER/data" --cuhk03 "$REIDLIB_SHARED/data/cuhk03-np-detected"
if python3 -c "import papermill, ipykernel, nbclient" 2>/dev/null; then
  echo "papermill + ipykernel import: ./run_all.sh on the derived profile"
  VENV=/tmp/reidlib-venv
  # no pip in it (ensurepip may be missing) and nothing to install: the GPU image's torch plus the carried wheels;
  # the stamp makes run_all.sh skip its setup step
  python3 -m venv --without-pip --system-site-packages "$VENV" \
    && cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1 > "$VENV/.requirements.sha256"
  if PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} "$VENV/bin/python" -c "import reidlib, papermill" 2>/dev/null; then
    PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} REIDLIB_VENV=$VENV timeout "$PAPER_S" \
      ./run_all.sh "$OUT/paper/gpu-paper-check.yaml" --data-root "$PAPER/data" > "$OUT/paper/run.log" 2>&1
    echo "run_all.sh exit $?"; tail -15 "$OUT/paper/run.log"
    (cd results && tar czf "$OUT/paper.tgz" gpu-paper-check)
  else
    echo "the venv at $VENV cannot import reidlib + papermill: no ./run_all.sh run (nothing is installed online)"
  fi
else
  echo "no papermill/ipykernel on this machine (carry wheels/ for the ./run_all.sh path): python3 -m reidlib.train"
  for model in bot_resnet50 osnet_x0_25 mnv3_siamese; do
    pre=$(python3 -c "import yaml,sys; m=[m for m in yaml.safe_load(open(sys.argv[1]))['models'] \
if m['name']==sys.argv[2]][0]; print(m.get('pretrained') or '')" "$OUT/paper/gpu-paper-check.yaml" "$model")
    kw=$([ "$model" = osnet_x0_25 ] && echo '"feature_dim": 1000, ' || true)
    pj=$([ -n "$pre" ] && echo "\"$pre\"" || echo null)
    timeout $((PAPER_S / 3)) python3 -m reidlib.train --dataset market1501 --root "$PAPER/data" \
      --dataset-kwargs '{"check_counts": false}' --model "$model" --epochs 2 --warmup-epochs 2 --eval-every 2 \
      --num-val-ids 50 --select-on val --color-jitter 0.1 --num-workers 8 --cache-dir "$PAPER/work/image-cache" \
      --model-kwargs "{${kw}\"pretrained\": $pj}" --no-progress \
      --out "$PAPER/work/$model" > "$OUT/paper/train-$model.log" 2>&1
    echo "$model: exit $?"; tail -25 "$OUT/paper/train-$model.log"
    cp "$PAPER/work/$model/result.json" "$OUT/paper/result-$model.json" 2>/dev/null
    cp "$PAPER/work/$model/metrics.csv" "$OUT/paper/metrics-$model.csv" 2>/dev/null
  done
fi
wait "$TESTS"; echo "CUDA tests exit $?"; tail -12 "$OUT/pytest.log"
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
ls -laR "$OUT"
