"""What the benchmarks against torchreid share: the peer env, the peer's recipe, one side run in its own process.

The peer env is ``.peer-venv`` (git-ignored), made once: a venv of the same Python whose ``site-packages`` holds a
``.pth`` line pointing at the project venv's ``site-packages``, so torch, torchvision, numpy, scipy and PIL are the
project's very files (no second 5 GB torch), plus ``pip install --no-deps torchreid==0.2.5`` and torchreid's light
imports (opencv-python-headless, gdown, yacs, h5py, tensorboard) installed into the peer env only. reidlib never
imports torchreid; the peer process cannot import reidlib (a plain path line does not run the project venv's own
``.pth`` files, which is where the editable reidlib install lives).

Used by ``peer_speed.py`` (throughput) and ``time_to_accuracy.py`` (accuracy against training minutes); the
torchreid side of both is ``peer_speed_torchreid.py``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_ENV = ROOT / ".peer-venv"
PEER_PACKAGE = "torchreid==0.2.5"
PEER_DEPS = ["opencv-python-headless", "gdown", "yacs", "h5py", "tensorboard"]
PEER_WORKER = ROOT / "benchmarks" / "peer_speed_torchreid.py"
SHARED = Path(os.environ.get("REIDLIB_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights" / "osnet_x0_25_msmt17.pth"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# torchreid's recipe as `fit` keywords: OSNet x0.25 at 256x128, P x K 16 x 4, amsgrad 1.5e-3 with a cosine schedule
# and no warm-up, label-smoothed CE + triplet (margin 0.3) without center loss, random flip only
PEER_RECIPE: dict = {"optimizer": "amsgrad", "lr": 1.5e-3, "scheduler": "cosine", "warmup_epochs": 0,
                     "milestones": (), "center_weight": 0.0, "flip_p": 0.5, "pad": 0, "erasing_p": 0.0,
                     "batch_size": 64, "num_instances": 4, "height": 256, "width": 128}
PEER_EPOCHS = 20  # the peer's schedule length (its cosine runs over these epochs)


def ensure_peer_env(rebuild: bool = False) -> Path:
    """Create ``.peer-venv`` once (see the module docstring) and return its python; reused while its spec holds."""
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this with the project venv's python (.venv/bin/python): the peer env borrows its torch")
    project_site = sysconfig.get_paths()["purelib"]
    spec = {"package": PEER_PACKAGE, "deps": PEER_DEPS, "project_site": project_site,
            "python": platform.python_version()}
    python = PEER_ENV / "bin" / "python"
    marker = PEER_ENV / ".peer-spec.json"
    if not rebuild and marker.is_file() and json.loads(marker.read_text()) == spec and python.exists():
        return python
    if PEER_ENV.exists():
        shutil.rmtree(PEER_ENV)
    print(f"creating the peer env {PEER_ENV} ({PEER_PACKAGE}, torch borrowed from {project_site})", flush=True)
    subprocess.run([sys._base_executable, "-m", "venv", str(PEER_ENV)], check=True)
    peer_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    (peer_site / "_reidlib_project_venv.pth").write_text(project_site + "\n")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + PEER_DEPS, check=True)  # numpy, PIL... are seen through the .pth and not reinstalled
    subprocess.run(pip + ["--no-deps", PEER_PACKAGE], check=True)
    check = subprocess.run([str(python), "-W", "ignore", "-c",
                            "import torch, torchreid; print(torch.__file__); print(torchreid.__version__)"],
                           check=True, capture_output=True, text=True).stdout.split()
    if not check[0].startswith(project_site):
        raise SystemExit(f"the peer env imports torch from {check[0]}, not from the project venv {project_site}")
    marker.write_text(json.dumps(spec, indent=1))
    return python


def run_side(python: Path, script: Path, task: str, work: Path, threads: int, label: str, *,
             child_flag: bool = False, stream: bool = False) -> dict:
    """Run one measurement in its own process and return its JSON (plus the load average around it).

    The process gets ``threads`` in the usual thread variables and runs ``python script [--child] task
    work/spec.json work/result-<label>.json``. ``stream``: its output goes to this terminal as it comes (for long
    runs) instead of being kept and shown only when it fails.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update({k: str(threads) for k in THREAD_ENV}, HF_HUB_OFFLINE="1", REIDLIB_PROGRESS="off",
               PYTHONWARNINGS="ignore")
    out = work / f"result-{label}.json"
    out.unlink(missing_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    cmd = [str(python), str(script), *(["--child"] if child_flag else []), task, str(work / "spec.json"), str(out)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=not stream, text=True)
    if proc.returncode != 0:
        shown = "" if stream else f":\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        raise SystemExit(f"{label} failed (exit {proc.returncode}){shown}")
    res = json.loads(out.read_text())
    res.update(process_seconds=time.perf_counter() - t0, load_before=load0, load_after=os.getloadavg()[0])
    print(f"{label:>22}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in res.items() if k in ("img_per_s", "seconds", "precision",
                                                                           "data_path", "images")), flush=True)
    return res


def hardware(threads: int) -> dict:
    """CPU name, cores, the torch threads each side gets, native bf16 / AMX / AVX-512 BF16, python, host."""
    from reidlib.runtime import cpu_flags, cpu_has_native_bf16, cpu_name

    flags = cpu_flags()
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads, "native_bf16": cpu_has_native_bf16(),
            "amx": bool(flags & {"amx_bf16", "amx_tile"}), "avx512_bf16": "avx512_bf16" in flags,
            "python": platform.python_version(), "host": platform.node()}


def peer_spec() -> dict:
    """The recipe fields the torchreid worker reads from its spec: height, width, batch_size, num_instances, lr."""
    return {k: PEER_RECIPE[k] for k in ("height", "width", "batch_size", "num_instances", "lr")}


def peer_fit_kwargs(spec: dict) -> dict:
    """:data:`PEER_RECIPE` as ``fit`` keywords, with the sizes, batch and lr of a worker ``spec`` (the same values)."""
    return {**PEER_RECIPE, **{k: spec[k] for k in ("height", "width", "batch_size", "num_instances", "lr")}}
