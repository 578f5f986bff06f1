"""reidlib.export: the ONNX graph gives PyTorch's embeddings (onnxruntime, real images, batch 1 and > 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed: pip install -e .[deploy]")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install -e .[deploy]")

from reidlib.data import build_dataset, build_transforms, read_image  # noqa: E402
from reidlib.engine import save_checkpoint  # noqa: E402
from reidlib.export import compare_with_torch, export_onnx, main, onnx_session, read_metadata  # noqa: E402
from reidlib.inference import load_embedding_model  # noqa: E402
from reidlib.models import build_model, list_models  # noqa: E402

H, W = 128, 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batch_of(paths: list[str]) -> torch.Tensor:
    tf = build_transforms(H, W, is_train=False)
    return torch.stack([tf(read_image(p)) for p in paths])


@pytest.fixture(scope="module")
def viper_batch(shared_data: Path) -> torch.Tensor:
    """Five VIPeR query images (five identities) as the normalised (5, 3, 128, 64) batch the models take."""
    ds = build_dataset("folder", shared_data / "viper")
    return batch_of([path for path, _, _ in ds.query[:5]])


def model_for(name: str, shared_dir: Path | None):
    if name == "osnet_x0_25" and shared_dir is not None:
        return load_embedding_model(name, weights=shared_dir / "weights" / "osnet_x0_25_msmt17.pth")
    return load_embedding_model(name, seed=0)  # random init is enough to check the graph


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("name", list_models())
def test_onnx_matches_pytorch_on_viper(name, viper_batch, shared_dir, tmp_path):
    model, ident = model_for(name, shared_dir)
    out = export_onnx(model, tmp_path / f"{name}.onnx", H, W, metadata=ident.as_dict(H, W))
    assert read_metadata(out)["model"] == name and read_metadata(out)["height"] == H
    for batch in (viper_batch[:1], viper_batch):  # the batch axis is dynamic
        check = compare_with_torch(model, out, batch)
        assert check["shape"][0] == batch.shape[0]
        assert check["min_cosine"] >= 0.9999, check
    with torch.no_grad():
        emb = model(viper_batch)
    assert float(emb.norm(dim=1).min()) > 0  # the cosine above compares real vectors, not zeros


def test_cli_with_checkpoint_and_errors(tmp_path, tiny_market, capsys):
    torch.manual_seed(0)
    model = build_model("osnet_x0_25", 8)
    run = tmp_path / "run"
    save_checkpoint({"model": model.state_dict(), "model_spec": {"name": "osnet_x0_25", "kwargs": {}},
                     "num_classes": 8}, run / "best.pt")
    out = tmp_path / "deploy" / "osnet.onnx"
    assert main(["--checkpoint", str(run), "--height", str(H), "--width", str(W), "--out", str(out)]) == 0
    assert "min cosine 1.0000" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["source"] == "checkpoint" and meta["weights_file"] == "best.pt" and len(meta["weights_sha256"]) == 64
    assert [p.name for p in out.parent.iterdir()] == ["osnet.onnx"]  # no temporary file left
    images = sorted(str(p) for p in (tiny_market / "query").glob("*.jpg"))[:3]
    onnx_out = onnx_session(out).run(None, {"images": batch_of(images).numpy()})[0]
    with torch.no_grad():
        ref = model.eval()(batch_of(images)).numpy()
    np.testing.assert_allclose(onnx_out, ref, rtol=1e-3, atol=1e-4)
    # Errors name what was wrong.
    assert main(["--model", "bot_resnet50", "--checkpoint", str(run), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "holds a 'osnet_x0_25' model" in capsys.readouterr().err
    assert main(["--model", "osnet_x0_25", "--weights", str(tmp_path / "missing.pth"), "--out",
                 str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--weights", str(run / "best.pt"), "--out", str(tmp_path / "x.onnx")])  # no --model
    assert not (tmp_path / "x.onnx").exists()


class TupleModel(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)), x


def test_failed_export_leaves_nothing(tmp_path):
    with pytest.raises(TypeError, match=r"\(N, D\) embedding"):
        export_onnx(TupleModel(), tmp_path / "bad.onnx", H, W)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(build_model("osnet_x0_25", 2), tmp_path / "bad.txt", H, W)
    assert list(tmp_path.iterdir()) == []
    assert json.loads(json.dumps(load_embedding_model("osnet_x0_25")[1].as_dict(H, W)))["source"] == "random"
