"""Data the user points cnnlab at: links into an image folder, deep trees, globs over link loops, conflicting
settings and --weights files that would make results silently wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from _reliability import assert_one_line_error, no_hang, run_cli, tiny_argv
from PIL import Image

from cnnlab import data
from cnnlab.errors import CnnlabError
from cnnlab.predict import MAX_MATCHES, expand_inputs


def _image_folder(root: Path) -> Path:
    for split in ("train", "val"):
        for k, name in enumerate(("ant", "bee")):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (10, 10), (90 * k, 30 * i, 80 * (split == "val"))).save(
                    root / split / name / f"{i}.png"
                )
    return root


def test_a_class_folder_linking_into_the_data_set_is_refused(tmp_path: Path) -> None:
    """`train/zz -> ..` (the root) would have class zz read the val/ (test) images into training."""
    root = _image_folder(tmp_path / "images")
    (root / "train" / "zz").symlink_to(root)
    with no_hang(30), pytest.raises(CnnlabError, match="is a link into the data set itself"):
        data.load(f"folder:{root}", "train")


def test_links_into_another_split_are_never_followed(tmp_path: Path) -> None:
    """Inside a class folder, a link to a val/ folder or a val/ file is skipped: no test image trains."""
    root = _image_folder(tmp_path / "images")
    (root / "train" / "ant" / "val-bees").symlink_to(root / "val" / "bee")
    (root / "train" / "bee" / "9.png").symlink_to(root / "val" / "bee" / "0.png")
    with no_hang(30):
        ds = data.load(f"folder:{root}", "train")
    assert len(ds) == 6 and not any("val" in str(p) for p in getattr(ds, "files", []))


def test_links_leading_outside_the_data_set_are_followed(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    outside = tmp_path / "more" / "ants"
    outside.mkdir(parents=True)
    Image.new("RGB", (10, 10), (1, 2, 3)).save(outside / "a.png")
    cats = tmp_path / "more" / "cats"
    cats.mkdir()
    Image.new("RGB", (10, 10), (4, 5, 6)).save(cats / "c.png")
    (root / "train" / "ant" / "more").symlink_to(outside)
    (root / "train" / "cat").symlink_to(cats)  # a whole class folder that is a link outside
    ds = data.load(f"folder:{root}", "train")
    assert ds.classes == ["ant", "bee", "cat"] and len(ds) == 8


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    deep = str(root / "train" / "ant")
    for _ in range(1100):  # os.makedirs and Path.mkdir(parents=True) recurse: one level at a time
        deep += "/d"
        os.mkdir(deep)
    Image.new("RGB", (10, 10), (5, 5, 5)).save(f"{deep}/deep.png")
    try:
        assert len(data.load(f"folder:{root}", "train")) == 7
        assert f"{deep}/deep.png" in expand_inputs([str(root / "train")])
    finally:  # shutil.rmtree recurses too (pytest's clean-up of old temporary folders would fail)
        os.unlink(f"{deep}/deep.png")
        while deep != str(root / "train" / "ant"):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_a_glob_over_link_loops_expands_each_real_folder_once(tmp_path: Path) -> None:
    """Two links to `.` made Python's glob expand 2^40 paths; each real folder is visited once."""
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (8, 8)).save(folder / "sub" / "b.png")
    (folder / "l1").symlink_to(".")
    (folder / "l2").symlink_to(".")
    with no_hang(30):
        found = expand_inputs([f"{folder}/**/*.png"])
    assert found == [str(folder / "a.png"), str(folder / "sub" / "b.png")]
    assert MAX_MATCHES >= 1_000_000  # a bound exists: more matches than that is one line


def test_conflicting_model_settings_are_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    line = assert_one_line_error(
        *run_cli(tiny_argv(out, 1, "--no-batch-norm", "--model-opt", "batch_norm=true"), capsys)[::2]
    )
    assert "--no-batch-norm" in line and "--model-opt batch_norm=true" in line
    assert not out.exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    from safetensors.torch import save_file

    from cnnlab import models

    state = models.create("alexnet_small", num_classes=10, in_channels=1, width=0.25).state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].clone()
    state[first].view(-1)[0] = bad
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        out = tmp_path / f"run-{name}"
        line = assert_one_line_error(
            *run_cli(tiny_argv(out, 1, "--weights", str(tmp_path / name)), capsys)[::2]
        )
        assert "holds NaN or infinite values" in line and first in line
        assert not out.exists()


EXITING = {
    "sys.exit(3) at import": "import sys\nsys.exit(3)\n",
    "a BaseException at import": "class Boom(BaseException):\n    pass\nraise Boom('no')\n",
    "sys.exit(0) in forward": (
        "import sys\nfrom torch import nn\nclass Net(nn.Module):\n"
        "    def forward(self, x):\n        sys.exit(0)\n"
    ),
}


@pytest.mark.parametrize("case", sorted(EXITING))
def test_a_network_file_that_exits_or_raises_a_base_exception_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    net = tmp_path / "net.py"
    net.write_text(
        EXITING[case] + ("" if "Net" in EXITING[case] else "from torch import nn\nNet = nn.Linear\n")
    )
    line = assert_one_line_error(*run_cli(["check", f"{net}:Net", "--against", "alexnet_small"], capsys)[::2])
    assert "SystemExit" in line or "Boom" in line, line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cnnlab.cli import main

    root = tmp_path_factory.mktemp("counts")
    assert main(tiny_argv(root / "run", 1)) == 0
    Image.new("L", (8, 8), 7).save(root / "x.png")
    return root


COUNTS = {
    "occlusion --patch 0": ["occlusion", "{ckpt}", "{img}", "-o", "{out}", "--patch", "0"],
    "occlusion --stride -2": ["occlusion", "{ckpt}", "{img}", "-o", "{out}", "--stride", "-2"],
    "occlusion --batch-size 0": ["occlusion", "{ckpt}", "{img}", "-o", "{out}", "--batch-size", "0"],
    "activations --top 0": ["activations", "{ckpt}", "{img}", "-o", "{out}", "--top", "0"],
    "mistakes --limit -1": ["mistakes", "{ckpt}", "-o", "{out}", "--limit", "-1", "--dataset", "digits"],
    "report --bank-size -5": ["report", "{run}", "--bank-size", "-5"],
    "report --gradcams -1": ["report", "{run}", "--gradcams", "-1"],
}


@pytest.mark.parametrize("case", sorted(COUNTS))
def test_zero_and_negative_counts_of_the_picture_commands_are_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    run = trained / "run"
    where = {"ckpt": run / "checkpoints" / "last.pt", "img": trained / "x.png", "out": tmp_path / "o.png",
             "run": run}  # fmt: skip
    argv = [a.format(**where) for a in COUNTS[case]]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert case.split()[1] in line, line  # the flag is named (argparse), not some later failure


def test_an_empty_freeze_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("", " , "):
        line = assert_one_line_error(*run_cli(tiny_argv(tmp_path / "run", 1, "--freeze", value), capsys)[::2])
        assert "--freeze" in line and "names no layer" in line
    assert not (tmp_path / "run").exists()


def test_activations_top_is_bounded_by_the_maps_there_are(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, ckpt = trained / "x.png", trained / "run" / "checkpoints" / "last.pt"
    with no_hang(60):
        code, _, err = run_cli(["activations", str(ckpt), str(image), "-o", str(tmp_path / "a.png"),
                                "--top", "2147483647", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err


def test_an_idx_header_announcing_255_dimensions_is_one_line(tmp_path: Path) -> None:
    from cnnlab.data.idx import read_idx

    (tmp_path / "x-idx3-ubyte").write_bytes(b"\x00\x00\x08\xff" + b"\x00\x00\x00\x01" * 255 + b"\x00")
    with pytest.raises(CnnlabError, match="announces 255 dimensions"):
        read_idx(tmp_path / "x-idx3-ubyte")


def test_cifar_label_names_of_shared_nested_lists_are_refused_unexpanded(tmp_path: Path) -> None:
    import pickle

    from cnnlab.data import cifar

    nest: list[object] = ["a"]
    for _ in range(60):
        nest = [nest, nest]  # 2^60 names once expanded; a few hundred bytes pickled
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": nest}, protocol=2))
    with no_hang(20), pytest.raises(CnnlabError, match="not a list of class names"):
        cifar.read_classes(tmp_path)


def test_an_image_of_extreme_aspect_ratio_is_refused_before_decoding(tmp_path: Path) -> None:
    """1 x 200,000 pixels is under Pillow's pixel limit, but resized to a shorter side of 28 it would be
    28 x 5.6 million: refused from the header, in one line."""
    from cnnlab.data.folder import read_image

    Image.new("L", (200_000, 1), 0).save(tmp_path / "strip.png")
    with pytest.raises(CnnlabError, match="extreme aspect ratio"):
        read_image(tmp_path / "strip.png", 1, side=28)


@pytest.mark.parametrize("command", ["predict", "export", "train"])
def test_a_name_longer_than_the_file_system_allows_is_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    long = tmp_path / ("n" * 300)
    ckpt = trained / "run" / "checkpoints" / "last.pt"
    argv = {
        "predict": ["predict", str(ckpt), f"{long}.png"],
        "export": ["export", str(ckpt), "--format", "safetensors", "-o", f"{long}/m.st"],
        "train": tiny_argv(long / "run", 1),
    }[command]
    assert_one_line_error(*run_cli(argv, capsys)[::2])  # no ENAMETOOLONG traceback


def test_predict_skips_bad_images_when_asked_and_writes_the_good_rows(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = trained / "run" / "checkpoints" / "last.pt"
    good = [tmp_path / "a.png", tmp_path / "c.png"]
    for p in good:
        Image.new("L", (8, 8), 50).save(p)
    (tmp_path / "b.png").write_text("not an image")
    argv = ["predict", str(ckpt), str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "c.png"),
            "--csv", str(tmp_path / "p.csv")]  # fmt: skip
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "b.png" in line and "--skip-bad-images" in line
    code, _, err = run_cli([*argv, "--skip-bad-images"], capsys)
    assert code == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(p) for p in good]
    assert "skipped" in err and "b.png" in err


def test_report_and_predict_take_the_data_flags_their_errors_name() -> None:
    from cnnlab.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["report", "run", "--skip-bad-images", "--data-dir", "d"])
    assert args.skip_bad_images and args.data_dir == "d"
    assert parser.parse_args(["predict", "c.pt", "x.png", "--skip-bad-images"]).skip_bad_images
