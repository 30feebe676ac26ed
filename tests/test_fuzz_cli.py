"""Property-based fuzzing of every subcommand's flags: whatever the numbers, paths and names, a command
ends with exit code 0 or 2, never a traceback, one `cnnlab: error:` line when it refuses, and no file
outside the folder it was pointed at (no temporary file left anywhere).

Numbers come from the values that break programs: negatives, zero, NaN, infinities, 10^9, beyond 64 bits,
text. Paths: empty, a file used as a folder, missing folders, an existing output, the checkpoint itself.
`train` and `reproduce` are left out (training is the training core's own tests' job). Examples are few
and derandomized, inputs tiny (the digits set, a quarter-width net), so the file takes seconds;
CNNLAB_FUZZ_SCALE=20 runs twenty times the examples with fresh draws.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import no_hang, tiny_argv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab import outfiles
from cnnlab.cli import main

EXAMPLES = int(15 * float(os.environ.get("CNNLAB_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CNNLAB_FUZZ_SCALE", "1") == "1",
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NUMBERS = st.sampled_from(
    ["0", "-1", "-5", "1", "2", "3", "1000000000", "1e9", "nan", "inf", "-inf", "1.5", "", "x",
     str(2**31), str(2**64), str(-(2**70))]
)  # fmt: skip
SMALL = st.sampled_from(["1", "2", "3"])
SIZES = st.sampled_from(
    ["1x28x28", "3x28x28", "28", "0x28x28", "3x1x1", "3x100000x100000", "3x-5x8", "abc", "", "1e9"]
)
MODELS = st.sampled_from(["alexnet_small", "vgg11", "googlenet", "nope", ""])
DATASETS = st.sampled_from(["digits", "nope", "folder:", "folder:a-file", "folder:missing", ""])
DEVICES = st.sampled_from(["cpu", "auto", "tpu", ""])
PNG = st.sampled_from(["out.png", "", ".", "a-file/x.png", "missing/deep/x.png", "x.jpg", "existing.png"])
SVG = st.sampled_from(["out.svg", "out.png", "", ".", "a-file/x.svg", "x.pdf", "missing/d.svg"])
FOLDER = st.sampled_from(["out", "", ".", "a-file", "a-file/sub", "missing/deep"])
CKPT = st.sampled_from(["CKPT", "CKPT", "CKPT", "missing.pt", "a-file", ""])
EXPORT_OUT = st.sampled_from(["m.onnx", "m.pt", "", ".", "a-file/m.onnx", "existing.png", "CKPT"])


def _flags(draw: st.DrawFn, options: dict[str, st.SearchStrategy[str] | None]) -> list[str]:
    """Each flag present or not; a None strategy is a switch without a value."""
    argv: list[str] = []
    for flag, values in options.items():
        if draw(st.booleans()):
            argv += [flag] if values is None else [flag, draw(values)]
    return argv


@st.composite
def command_lines(draw: st.DrawFn, command: str) -> list[str]:
    if command == "models":
        return ["models", *_flags(draw, {"--num-classes": NUMBERS})]
    if command == "summary":
        flags = {"--input-size": SIZES, "--num-classes": NUMBERS, "--batch-size": NUMBERS, "--json": None}
        return ["summary", draw(MODELS), *_flags(draw, flags)]
    if command == "diagram":
        flags = {"--input-size": SIZES, "--num-classes": NUMBERS, "--depth": NUMBERS}
        return [
            "diagram",
            draw(st.sampled_from(["alexnet_small", "nope"])),
            "-o",
            draw(SVG),
            *_flags(draw, flags),
        ]
    if command == "compare":
        timed = draw(st.booleans())
        flags = {"--input-size": SIZES, "--batch-size": NUMBERS, "--num-classes": NUMBERS, "--out": FOLDER}
        flags |= {"--json": None, "--device": DEVICES}
        if timed:  # only the small net, one step: the timing path without minutes of work
            names, extra = ["alexnet_small"], ["--steps", "1", "--warmup", "0"]
            flags = {k: v for k, v in flags.items() if k not in ("--input-size", "--num-classes")}
            flags["--input-size"] = st.sampled_from(["1x28x28", "3x100000x100000", "0x1x1", ""])
        else:
            names = draw(st.lists(MODELS, min_size=1, max_size=2))
            extra = ["--no-timing", *_flags(draw, {"--steps": NUMBERS, "--warmup": NUMBERS})]
        return ["compare", *names, *extra, *_flags(draw, flags)]
    if command == "filters":
        if draw(st.booleans()):
            source = ["filters", draw(MODELS), "--init", *_flags(draw, {"--in-channels": NUMBERS})]
        else:
            source = ["filters", draw(CKPT)]
        return [*source, "-o", draw(PNG), *_flags(draw, {"--cols": NUMBERS, "--seed": NUMBERS})]
    if command == "neighbors":
        flags = {"--queries": NUMBERS, "--k": NUMBERS, "--batch-size": NUMBERS, "--seed": NUMBERS}
        flags |= {"--data-dir": FOLDER, "--skip-bad-images": None, "--device": DEVICES}
        return [
            "neighbors", draw(CKPT), "-o", draw(PNG), "--dataset", draw(DATASETS),
            "--bank-size", draw(st.sampled_from(["40", "0", "-3", "1e9", str(2**40)])), *_flags(draw, flags),
        ]  # fmt: skip
    if command == "eval":
        flags = {"--dataset": DATASETS, "--limit": NUMBERS, "--batch-size": NUMBERS}
        flags |= {"--split": st.sampled_from(["test", "train", "nope"]), "--skip-bad-images": None}
        flags |= {"--views": st.sampled_from(["center", "flip", "tencrop", "nope"]), "--json": None}
        # Always --out: the default (RUN/eval beside the checkpoint) is outside the example's folder.
        checkpoints = draw(st.lists(CKPT, min_size=1, max_size=2))
        return ["eval", *checkpoints, "--device", "cpu", "--out", draw(FOLDER), *_flags(draw, flags)]
    if command == "predict":
        images = draw(
            st.lists(st.sampled_from(["img.png", "a-file", "missing.png", ""]), min_size=1, max_size=2)
        )
        return ["predict", draw(CKPT), *images, *_flags(draw, {"--top": NUMBERS, "--json": None})]
    if command == "export":
        fmt = draw(st.sampled_from(["torchscript", "safetensors", "onnx", "pickle"]))
        return [
            "export",
            draw(CKPT),
            "--format",
            fmt,
            "-o",
            draw(EXPORT_OUT),
            *_flags(draw, {"--force": None}),
        ]
    if command == "data":
        flags = {"--data-dir": FOLDER, "--show-skipped": NUMBERS, "--stats": None, "--skip-bad-images": None}
        return ["data", "--dataset", draw(DATASETS), *_flags(draw, flags)]
    raise AssertionError(command)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzcli")
    assert main(tiny_argv(root / "run", 1, "--input-size", "28")) == 0
    return root / "run" / "checkpoints" / "last.pt"


@contextlib.contextmanager
def example_folder(base: Path) -> Iterator[Path]:
    """A fresh working folder per example: a file named a-file, an existing PNG, an image to predict."""
    from PIL import Image

    n = len(list(base.iterdir()))
    folder = base / f"ex{n}"
    folder.mkdir()
    (folder / "a-file").write_text("a file, not a folder")
    Image.new("L", (28, 28), 50).save(folder / "img.png")
    (folder / "existing.png").write_bytes((folder / "img.png").read_bytes())
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(old)


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


COMMANDS = [
    "models",
    "summary",
    "diagram",
    "compare",
    "filters",
    "neighbors",
    "eval",
    "predict",
    "export",
    "data",
]


@pytest.mark.parametrize("command", COMMANDS)
@settings(FUZZ)
@given(data=st.data())
def test_every_command_ends_in_0_or_one_error_line(
    ckpt: Path, tmp_path_factory: pytest.TempPathFactory, command: str, data: st.DataObject
) -> None:
    argv = data.draw(command_lines(command))
    argv = [str(ckpt) if a == "CKPT" else a for a in argv]
    fixture_before = _snapshot(ckpt.parent.parent)
    base = tmp_path_factory.getbasetemp() / f"fuzz-{command}"
    base.mkdir(exist_ok=True)
    with example_folder(base) as folder:
        before = set(_snapshot(folder))
        out, err = io.StringIO(), io.StringIO()
        with no_hang(120), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's refusals
                code = exc.code if isinstance(exc.code, int) else 1
        text = err.getvalue()
        assert code in (0, 2), f"{argv}: exit {code}\n{text}"
        assert "Traceback" not in text, f"{argv}:\n{text}"
        if code == 2:
            lines = text.splitlines()
            assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), f"{argv}: {text!r}"
        leftovers = [p for p in _snapshot(folder) if outfiles.TMP_PREFIX in Path(p).name]
        assert not leftovers, f"{argv}: temporary files left: {leftovers}"
        if code == 2:  # a refused command writes nothing at all
            assert set(_snapshot(folder)) == before, f"{argv}: {sorted(set(_snapshot(folder)) - before)}"
    assert _snapshot(ckpt.parent.parent) == fixture_before, f"{argv} changed the checkpoint's run folder"
