"""Export: ONNX checked against PyTorch with onnxruntime, TorchScript, safetensors."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch
from test_train import tiny  # tests/ is on sys.path (no __init__.py)

from cnnlab import checkpoint, cli
from cnnlab import export as export_module
from cnnlab.errors import CnnlabError
from cnnlab.export import export
from cnnlab.training import train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    # Batch norm, LRN and dropout present (their eval-mode forms must export); 28x28 grey input, the
    # small net's native size (the 8x8 digits are upsampled).
    train(tiny(root / "run", epochs=1, input_size=28, batch_norm=True, model_opt=["width=0.25", "lrn=true"]))
    return root / "run" / "checkpoints" / "last.pt"


def _reference(ckpt: Path, x: torch.Tensor) -> torch.Tensor:
    model = checkpoint.build_model(checkpoint.load(ckpt))
    with torch.no_grad():
        return model(x)


def _onnx_round_trip(ckpt: Path, path: Path, side: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = export(str(ckpt), "onnx", str(path))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, side, side)  # not the export example's batch size: the batch is dynamic
    (got,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), _reference(ckpt, x), rtol=1e-4, atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]
    assert meta["cnnlab_model"] == "alexnet_small" and meta["input_size"] == str(side)


def test_onnx_round_trip_with_onnxruntime(ckpt: Path, tmp_path: Path) -> None:
    _onnx_round_trip(ckpt, tmp_path / "model.onnx", 28)


@pytest.mark.slow
def test_onnx_falls_back_to_the_dynamo_exporter(ckpt: Path, tmp_path: Path) -> None:
    # At 8x8 the last pool gives 1x1 maps, which the adaptive 4x4 pool upsamples: the TorchScript
    # exporter refuses that, the dynamo exporter handles it.
    c = checkpoint.load(ckpt)
    c["augment"]["input_size"] = 8
    small = tmp_path / "small.pt"
    checkpoint.save(c, small)
    _onnx_round_trip(small, tmp_path / "small.onnx", 8)


def test_torchscript_and_safetensors(ckpt: Path, tmp_path: Path) -> None:
    x = torch.randn(3, 1, 28, 28)
    ts = export(str(ckpt), "torchscript", str(tmp_path / "model.pt"))
    extra = {"cnnlab.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still loadable
        loaded = torch.jit.load(str(ts), _extra_files=extra)
    torch.testing.assert_close(loaded(x), _reference(ckpt, x), rtol=1e-5, atol=1e-6)
    assert json.loads(extra["cnnlab.json"])["num_classes"] == "10"

    from safetensors import safe_open
    from safetensors.torch import load_file

    st = export(str(ckpt), "safetensors", str(tmp_path / "model.safetensors"))
    c = checkpoint.load(ckpt)
    model = checkpoint.build_model(c)
    model.load_state_dict(load_file(str(st)))
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference(ckpt, x))
    with safe_open(str(st), "pt") as f:
        assert f.metadata()["in_channels"] == "1"


def test_export_command_and_errors(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["export", str(ckpt), "--format", "safetensors", "-o", str(tmp_path / "m.safetensors")]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CnnlabError, match="a-file is not a folder"):
        export(str(ckpt), "onnx", str(tmp_path / "a-file" / "m.onnx"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "m.safetensors"]  # no temporary files


def test_export_creates_its_folder_and_prints_the_real_shape(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "deeper" / "m.pt"
    assert cli.main(["export", str(ckpt), "--format", "torchscript", "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert out.is_file() and f"wrote {out}" in line
    assert "input float32 [N, 1, 28, 28]" in line and "output logits [N, 10]" in line and "[N, C" not in line


def test_every_format_gets_the_same_mode(ckpt: Path, tmp_path: Path) -> None:
    old = os.umask(0o027)  # whatever the umask, as any file the user writes
    try:
        modes = {
            fmt: stat.S_IMODE(export(str(ckpt), fmt, str(tmp_path / f"m.{fmt}")).stat().st_mode)
            for fmt in ("onnx", "torchscript", "safetensors")
        }
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o640}, modes


def test_onnx_export_is_quiet_unless_it_fails(
    ckpt: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._onnx_loud

    def chatty(*args: object, **kwargs: object) -> bytes:
        print("[torch.onnx] Run decompositions...")  # Python's output, as the dynamo exporter's
        os.write(2, b"Torch IR graph at exception: ...\n")  # C++'s, as the TorchScript exporter's
        if os.environ.get("CNNLAB_TEST_FAIL"):
            raise RuntimeError("the exporter gave up")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module, "_onnx_loud", chatty)
    assert cli.main(["export", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("wrote ") and out.count("\n") == 1 and err == ""
    monkeypatch.setenv("CNNLAB_TEST_FAIL", "1")
    with pytest.raises(RuntimeError, match="gave up"):
        export(str(ckpt), "onnx", str(tmp_path / "m2.onnx"))
    out, err = capfd.readouterr()
    assert "Torch IR graph at exception" in err and "Run decompositions" in err  # kept for the failure
