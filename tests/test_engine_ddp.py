"""Two-process DDP launched with torchrun exactly as a user would, on a tiny synthetic dataset: on the CPU (gloo, the
backend of a CPU run even on a machine with GPUs), with a loss that leaves the classifier unused, and on CUDA (nccl
with a GPU per process, else gloo with both processes on one GPU; CUDA only)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from reidlib.data import build_dataset
from reidlib.engine import load_checkpoint
from reidlib.models import build_model

WORKER = textwrap.dedent("""
    import json
    import sys
    import torch
    torch.set_num_threads(1)
    from reidlib.data import build_dataset
    from reidlib.engine import fit, init_distributed
    from reidlib.engine.distributed import cleanup

    root, out, dump, device, backend, want, loss = sys.argv[1:8]
    info = init_distributed(None if backend == "default" else backend, device=device)
    assert torch.distributed.get_backend() == want, torch.distributed.get_backend()
    res = fit("osnet_x0_25", build_dataset("synthetic", root), out_dir=out, epochs=1, num_val_ids=3,
              batch_size=16, num_instances=4, height=64, width=32, device=device, precision="fp32",
              channels_last=False, progress=False, warmup_epochs=0, test_batch_size=64, optimizer="sgd",
              model_kwargs={"feature_dim": 32}, loss_kwargs=json.loads(loss))
    params = torch.cat([p.detach().flatten() for p in res.model.parameters()]).cpu()
    torch.save({"rank": info.rank, "world": info.world_size, "params": params, "images": res.history[0]["images"],
                "test": res.test_metrics}, f"{dump}/rank{info.rank}.pt")
    cleanup()
""")


def _torchrun(tmp_path, device: str = "cpu", backend: str = "default", want: str = "gloo",
              loss: str = "{}") -> tuple:
    """Train 1 epoch with 2 processes; returns (dataset, run folder, each rank's dump)."""
    root = tmp_path / "data"
    ds = build_dataset("synthetic", root, num_ids=40, num_cams=2, images_per_id_per_cam=2, height=64, width=32)
    script, out, dump = tmp_path / "worker.py", tmp_path / "run", tmp_path / "dump"
    script.write_text(WORKER)
    dump.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(root), str(out), str(dump), device, backend, want, loss]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ds, out, [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed + gloo")


@needs_gloo
def test_two_process_gloo_ddp(tmp_path):
    ds, out, ranks = _torchrun(tmp_path)  # device cpu: gloo, also where CUDA is available
    assert [(d["rank"], d["world"]) for d in ranks] == [(0, 2), (1, 2)]  # both ranks ran
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])  # DDP kept the replicas identical
    # each rank took its own share of the P x K batches: the global count is 2 x (batches per rank) x 16
    per_rank = ranks[0]["images"] // 2
    assert ranks[0]["images"] == ranks[1]["images"] and per_rank % 16 == 0 and 0 < per_rank < len(ds.train)
    assert ranks[0]["test"] is not None and ranks[1]["test"] is None  # rank 0 alone evaluates
    state = load_checkpoint(out / "last.pt")  # rank 0 wrote the checkpoint
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["epoch"] == 1
    model = build_model("osnet_x0_25", state["num_classes"], feature_dim=32)
    model.load_state_dict(state["model"])
    assert torch.equal(torch.cat([p.detach().flatten() for p in model.parameters()]), ranks[0]["params"])


@pytest.mark.slow
@needs_gloo
def test_ddp_with_a_loss_that_leaves_the_classifier_unused(tmp_path):
    """id_weight 0: the classifier gets no gradient. DDP must be told (find_unused_parameters), else the second
    step fails with 'Expected to have finished reduction in the prior iteration'."""
    _, out, ranks = _torchrun(tmp_path, loss='{"id_weight": 0}')
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and "loss_id" not in state["history"][0]


@pytest.mark.skipif(not torch.cuda.is_available() or not dist.is_available(), reason="needs CUDA and torch.distributed")
def test_two_process_ddp_on_cuda(tmp_path):
    """nccl with one GPU per process where there are two; on one GPU both processes share it through gloo (nccl
    refuses two ranks on one device)."""
    two = torch.cuda.device_count() >= 2
    _, out, ranks = _torchrun(tmp_path, device="cuda" if two else "cuda:0", backend="default" if two else "gloo",
                              want="nccl" if two else "gloo")
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    assert ranks[0]["test"] is not None and load_checkpoint(out / "last.pt")["world_size"] == 2
