"""Library-side faults: divergence stops training, unreadable checkpoints are named, 16-bit and other image modes
decode with correct scaling, CLI numbers are range-checked, and file names must start with ``PID_cCAM``.

Training runs use OSNet x0.25 at 64 x 32 on a tiny synthetic dataset (CPU, fp32, one thread, a second or two each).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.data import DatasetLayoutError, build_dataset, read_image
from reidlib.data.cache import ImageCache
from reidlib.data.folder import parse_market_name, read_market_split
from reidlib.data.images import to_rgb
from reidlib.engine import fit, load_checkpoint, load_model, save_checkpoint
from reidlib.engine.checkpoint import CheckpointError, checkpoint_readable
from reidlib.engine.health import TrainingDiverged, check_divergence

FAST = dict(batch_size=16, num_instances=4, height=64, width=32, device="cpu", precision="fp32",
            channels_last=False, progress=False, milestones=(2,), test_batch_size=64,
            model_kwargs={"feature_dim": 32})


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models on a shared 2-core machine


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_dataset("synthetic", tmp_path_factory.mktemp("data") / "s", num_ids=16, domain=0, seed=0,
                         num_cams=2, images_per_id_per_cam=2, height=64, width=32)


# ---- divergence ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr, why", [(1000.0, "exceeds 10 x ln"), (1e30, "not finite")])
def test_a_diverging_run_stops_with_the_epoch_the_terms_and_the_fix(data, tmp_path, lr, why):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as err:
        fit("osnet_x0_25", data, out_dir=out, epochs=2, lr=lr, warmup_epochs=0, **FAST)
    msg = str(err.value)
    assert "diverged in epoch 1" in msg and why in msg
    assert "loss_id" in msg and "loss_triplet" in msg and "loss_center" in msg
    assert f"lr {lr:g}" in msg and "no warm-up" in msg and "warmup_epochs 10" in msg
    # nothing of the diverged model is left to evaluate or report
    assert not {"last.pt", "best.pt", "test_metrics.json", "result.json"} & {p.name for p in out.iterdir()}


def test_divergence_bounds_by_hand():
    recipe = {"lr": 0.1, "optimizer": "sgd", "warmup_epochs": 10}
    first = {"epoch": 1, "loss": 8.0, "loss_id": 4.0, "loss_triplet": 1.0, "loss_center": 6000.0}
    # healthy: CE at chance (ln 100 = 4.6) and a loss 900 x the first epoch's pass
    check_divergence(dict(first), None, 100, recipe)
    check_divergence({"epoch": 2, "loss": 7200.0, "loss_id": 46.0}, first, 100, recipe)
    with pytest.raises(TrainingDiverged, match=r"cross-entropy 46.1 exceeds 10 x ln\(100\) = 46.1"):
        check_divergence({"epoch": 2, "loss": 50.0, "loss_id": 46.1}, first, 100, recipe)
    with pytest.raises(TrainingDiverged, match=r"epoch 3: the loss 8001 exceeds 1000 x the first epoch's \(8\)"):
        check_divergence({"epoch": 3, "loss": 8001.0, "loss_id": 4.0}, first, 100, recipe)
    with pytest.raises(TrainingDiverged, match=r"loss_center is not finite.*0.01-0.065.*last.pt holds epoch 3"):
        check_divergence({"epoch": 4, "loss": 8.0, "loss_id": 4.0, "loss_center": float("inf")}, first, 100, recipe)


# ---- checkpoints ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    torch.set_num_threads(1)
    return fit("osnet_x0_25", data, out_dir=tmp_path_factory.mktemp("runs") / "ok", epochs=1, **FAST).out_dir


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    files = {"truncated": raw[: len(raw) // 2], "empty": b"", "text": b"<html>404 Not Found</html>\n"}
    out = {name: folder / f"{name}.pt" for name in files}
    for name, blob in files.items():
        out[name].write_bytes(blob)
    torch.save({"conv1.weight": torch.zeros(2, 2)}, folder / "bare.pt")  # a weights file, not a checkpoint
    out["bare"] = folder / "bare.pt"
    return out


def test_unreadable_checkpoints_are_named_with_the_fix(run, tmp_path):
    good = run / "last.pt"
    assert checkpoint_readable(good) is None and checkpoint_readable(run) is None
    bad = _bad_files(tmp_path, good)
    expect = {"truncated": "is truncated", "empty": "is empty", "text": "not a file written by torch.save",
              "bare": "bare weights file"}
    for name, path in bad.items():
        reason = checkpoint_readable(path)
        assert reason is not None and str(path) in reason and expect[name] in reason, reason
        with pytest.raises(CheckpointError, match=expect[name]) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value)
        with pytest.raises(CheckpointError, match=expect[name]):
            load_model(path)
    assert "delete it and train that run again" in checkpoint_readable(bad["truncated"])
    assert "does not exist" in checkpoint_readable(tmp_path / "missing.pt")


def test_resume_from_a_truncated_last_pt_names_the_file(data, run, tmp_path):
    out = tmp_path / "resume"
    out.mkdir()
    raw = (run / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated") as err:
        fit("osnet_x0_25", data, out_dir=out, epochs=2, **FAST)
    assert str(out / "last.pt") in str(err.value)


def test_export_and_search_clis_print_one_line_for_a_bad_checkpoint(run, tmp_path, capsys):
    from reidlib.export import main as export_main
    from reidlib.search import main as search_main

    bad = _bad_files(tmp_path, run / "last.pt")["truncated"]
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    assert export_main(["--checkpoint", str(bad), "--height", "64", "--width", "32",
                        "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint") and str(bad) in err and "truncated" in err and "\n" not in err
    assert search_main(["index", "--checkpoint", str(bad), "--gallery", str(gallery),
                        "--out", str(tmp_path / "i.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint") and "truncated" in err and "Traceback" not in err


def test_a_truncated_search_index_is_named(tmp_path, capsys):
    from reidlib.search import main as search_main

    index = tmp_path / "i.npz"
    np.savez(index, feats=np.zeros((2, 4), np.float32), paths=np.asarray(["a", "b"]), meta=np.asarray("{}"))
    index.write_bytes(index.read_bytes()[:100])
    query = tmp_path / "q.png"
    Image.new("RGB", (8, 16)).save(query)
    assert search_main(["query", "--index", str(index), str(query)]) == 2
    err = capsys.readouterr().err
    assert f"index {index} cannot be read" in err and "build it again" in err


# ---- image modes ---------------------------------------------------------------------------------------------
def _png16(path: Path, samples: np.ndarray, color_type: int) -> Path:
    """Write a real 16-bit PNG (gray 0, RGB 2, gray+alpha 4, RGBA 6) from uint16 samples (H, W[, C])."""
    h, w = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def pixels() -> np.ndarray:
    """An 8-bit RGBA test image (12 x 7) with every gray level extreme included."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 7, 4), dtype=np.uint8)
    img[0, 0], img[0, 1] = 0, 255
    return img


def test_16bit_pngs_decode_like_their_8bit_twins(tmp_path, pixels):
    wide = pixels.astype(np.uint16) * 257  # the 8-bit image exactly, stored in 16 bits
    cases = {"gray": (wide[..., 0], 0, "L", pixels[..., 0]), "rgb": (wide[..., :3], 2, "RGB", pixels[..., :3]),
             "gray_alpha": (wide[..., :2], 4, "LA", pixels[..., :2]), "rgba": (wide, 6, "RGBA", pixels)}
    for name, (samples, color_type, mode8, eight) in cases.items():
        path16 = _png16(tmp_path / f"{name}16.png", samples, color_type)
        path8 = tmp_path / f"{name}8.png"
        Image.fromarray(eight, mode8).save(path8)
        got, want = np.asarray(read_image(path16)), np.asarray(read_image(path8))
        assert got.dtype == np.uint8 and got.shape == (12, 7, 3)
        np.testing.assert_array_equal(got, want, err_msg=name)
    with Image.open(tmp_path / "gray16.png") as img:
        assert img.mode in ("I;16", "I")  # what PIL makes of it; PIL's own convert("RGB") clips it to white
        assert (np.asarray(img.convert("RGB")) == 255).mean() > 0.9
    # a mid-range 16-bit value, not a multiple of 257: round(v * 255 / 65535)
    path = _png16(tmp_path / "mid.png", np.array([[1000, 32768, 65535, 0]], np.uint16), 0)
    assert np.asarray(read_image(path))[0, :, 0].tolist() == [4, 128, 255, 0]


def test_the_image_cache_decodes_16bit_pngs_like_8bit_ones(tmp_path, pixels):
    path16 = _png16(tmp_path / "a.png", pixels[..., 0].astype(np.uint16) * 257, 0)
    path8 = tmp_path / "b.png"
    Image.fromarray(pixels[..., 0], "L").save(path8)
    cache = ImageCache.build([path16, path8], 12, 7, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cache.images[0], cache.images[1])
    assert cache.images[0, 0, 1].tolist() == [255, 255, 255]


def test_other_modes_convert_to_rgb(tmp_path, pixels):
    rgb = pixels[..., :3]
    gray = pixels[..., 0]
    # 32-bit integer (older Pillow's reading of a 16-bit gray PNG): the 16-bit range
    as_int = Image.fromarray((gray.astype(np.int32) * 257), "I")
    as_int.save(tmp_path / "i.tif")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "i.tif"))[..., 0], gray)
    # big-endian 16-bit
    np.testing.assert_array_equal(np.asarray(to_rgb(as_int.convert("I;16B")))[..., 1], gray)
    # float: 0..1 scaled by 255; a 0..255 float image is read as is
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "f.tif"))[..., 2], gray)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(gray.astype(np.float32), "F")))[..., 0], gray)
    # palette (exact: at most 256 colours), CMYK (TIFF, lossless), bilevel, gray + alpha, RGBA
    few = rgb // 64 * 64
    Image.fromarray(few, "RGB").quantize(colors=64, method=Image.Quantize.MAXCOVERAGE).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as img:
        assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "p.png")), few)
    Image.fromarray(rgb, "RGB").convert("CMYK").save(tmp_path / "c.tif")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "c.tif")), rgb)
    Image.fromarray(gray > 127).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "b.png"))[..., 0], np.where(gray > 127, 255, 0))
    Image.fromarray(pixels[..., :2], "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "la.png")), np.repeat(gray[..., None], 3, 2))
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "rgba.png")), rgb)  # alpha dropped


# ---- CLI numbers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cli, argv, message", [
    ("search", ["query", "--index", "i.npz", "--batch-size", "-1", "q.png"],
     "argument --batch-size: must be an integer from 1 to 65536, got -1"),
    ("search", ["index", "--model", "osnet_x0_25", "--weights", "w.pth", "--gallery", "g", "--out", "i.npz",
                "--batch-size", "-1"], "argument --batch-size: must be an integer from 1 to 65536, got -1"),
    ("search", ["query", "--index", "i.npz", "--top-k", "0", "q.png"], "argument --top-k: must be an integer >= 1"),
    ("search", ["index", "--model", "osnet_x0_25", "--weights", "w.pth", "--gallery", "g", "--out", "i.npz",
                "--height", "7"], "argument --height: must be an integer from 16 to 4096, got 7"),
    ("search", ["query", "--index", "i.npz", "--threads", "0", "q.png"], "argument --threads: must be an integer"),
    ("search", ["query", "--index", "i.npz", "--width", "many", "q.png"], "got 'many'"),
    ("export", ["--model", "osnet_x0_25", "--weights", "w.pth", "--out", "m.onnx", "--width", "8"],
     "argument --width: must be an integer from 16 to 4096, got 8"),
    ("export", ["--model", "osnet_x0_25", "--weights", "w.pth", "--out", "m.onnx", "--opset", "99"],
     "argument --opset: must be an integer from 7 to 20, got 99"),
])
def test_cli_numbers_are_range_checked_by_the_parser(cli, argv, message, capsys):
    from reidlib.export import main as export_main
    from reidlib.search import main as search_main

    with pytest.raises(SystemExit) as exit_:
        (search_main if cli == "search" else export_main)(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("option, message", [(["--epochs", "0"], "epochs must be >= 1, got 0"),
                                             (["--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
                                             (["--metric-warmup-epochs", "-2"], "metric_warmup_epochs must be >= 0")])
def test_the_train_cli_refuses_out_of_range_options(option, message, capsys):
    from reidlib.engine.launch import main as train_main

    with pytest.raises(SystemExit) as exit_:
        train_main(["--dataset", "synthetic", "--root", "r", "--model", "osnet_x0_25", "--out", "o", *option])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_search_functions_refuse_a_non_positive_batch_or_top_k():
    from reidlib.search import SearchIndex, embed_files, query_index

    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        embed_files(torch.nn.Identity(), ["x.png"], 64, 32, batch_size=0)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        query_index(SearchIndex(np.zeros((1, 2), np.float32), ["a"], {}), torch.nn.Identity(), ["x.png"], top_k=0)


# ---- file names ----------------------------------------------------------------------------------------------
def test_names_must_start_with_pid_and_camera(tmp_path):
    assert parse_market_name("0012_c2_00120002.png") == (12, 1)
    assert parse_market_name("-1_c1s1_000401_03.jpg") == (-1, 0)
    for name in ("Copy of 0012_c2_00120002.png", "x0012_c2.png", "a_0012_c2.png", " 0012_c2.png"):
        assert parse_market_name(name) is None, name
    folder = tmp_path / "bounding_box_train"
    folder.mkdir()
    for name in ("0012_c2_00120002.png", "Copy of 0012_c2_00120002.png"):
        Image.new("RGB", (8, 16)).save(folder / name)
    with pytest.raises(DatasetLayoutError) as err:
        read_market_split(folder)
    msg = str(err.value)
    assert "1 file name(s)" in msg and "'Copy of 0012_c2_00120002.png'" in msg
    assert "rename them to start with it ('0012_c2_00120002.png')" in msg
    (folder / "Copy of 0012_c2_00120002.png").unlink()
    assert read_market_split(folder) == [(str(folder / "0012_c2_00120002.png"), 12, 1)]


def test_a_checkpoint_written_by_save_checkpoint_round_trips(tmp_path):
    state = {"format": 1, "epoch": 1, "model": {"w": torch.arange(3.0)}}
    path = save_checkpoint(state, tmp_path / "x.pt")
    assert checkpoint_readable(path) is None
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(3.0))
