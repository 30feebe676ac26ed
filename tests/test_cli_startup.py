"""The command line parses without torch: `--help`, `models`, a command's help and argument errors answer
in a fraction of a second (torch costs seconds to import). Also: "did you mean" for mistyped names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import cli, commands
from cnnlab.errors import CnnlabError, did_you_mean

ROOT = Path(__file__).resolve().parents[1]

# Runs `cnnlab ARGV` in a fresh interpreter and reports the exit code and whether torch got imported.
PROBE = """
import json, sys
from cnnlab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def probe(*argv: str) -> tuple[int, bool, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["torch"], done.stdout + done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["models"],
        ["models", "--num-classes", "10"],
        ["train", "--help"],
        ["eval", "--help"],
        ["reproduce", "--help"],
        ["trian"],  # an unknown command
        ["train", "--epochs", "many"],  # a bad value
        # Impossible values of `train`'s settings are refused at parse time, like every command's.
        ["train", "--model", "alexnet_small", "--dataset", "digits", "--epochs", "0"],
        ["train", "--model", "alexnet_small", "--dataset", "digits", "--seed", str(2**64)],
        ["train", "--model", "alexnet_small", "--dataset", "digits", "--lr", "nan"],
        ["train", "--model", "alexnet_small", "--dataset", "digits", "--val-split", "1.5"],
        ["train", "--model", "alexnet_small", "--dataset", "digits", "--momentum", "1"],
        ["eval", "x.pt", "--views", "tencop"],  # a bad choice
        ["export", "x.pt"],  # a missing required flag
    ],
)
def test_parsing_never_imports_torch(argv: list[str]) -> None:
    code, torch_imported, out = probe(*argv)
    assert not torch_imported, out
    assert code in (0, 2, None), out


def test_every_command_is_parsed_torch_free() -> None:
    # Every sub-command's help, in one interpreter: a command module that imports torch fails here.
    code = """
import contextlib, io, sys
from cnnlab.cli import build_parser
parser = build_parser()
names = list(parser._subparsers._group_actions[0].choices)
for name in names:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args([name, "--help"])
        except SystemExit:
            pass
print(len(names), "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    count, torch_imported = done.stdout.split()
    assert int(count) >= 18 and torch_imported == "False", done.stdout + done.stderr


def test_a_command_runs_its_module_after_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["summary", "alexnet_small"])
    assert args.func == commands.Lazy("cnnlab.commands.networks_run", "run_summary")
    assert cli.main(["summary", "lenet5", "--num-classes", "10"]) == 0
    assert "total params: 60,850" in capsys.readouterr().out


def test_the_top_level_help_is_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "AlexNet, VGG and GoogLeNet" in out and "quickstart" in out
    assert "register_cli" not in out and "argument parsing" not in out


def test_did_you_mean() -> None:
    hint = did_you_mean("fashion_mnistt", ["fashion-mnist", "mnist", "cifar10"])
    assert hint == " (did you mean 'fashion-mnist'?)"
    assert did_you_mean("AlexNet", ["alexnet", "vgg16"]) == " (did you mean 'alexnet'?)"
    assert did_you_mean("resnet50", ["alexnet", "vgg16"]) == ""


def test_unknown_names_get_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab import data, models

    suggestion = r"unknown data set 'fashion_mnistt' \(did you mean 'fashion-mnist'\?\)"
    with pytest.raises(CnnlabError, match=suggestion):
        data.load("fashion_mnistt", "train")
    with pytest.raises(CnnlabError, match=r"unknown model 'alexnett' \(did you mean 'alexnet'\?\)"):
        models.create("alexnett")
    assert cli.main(["summary", "vgg166"]) == 2
    assert "did you mean 'vgg16'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["trian"])
    assert "invalid choice: 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_the_torch_free_names_match_the_live_ones() -> None:
    from cnnlab import choices, experiments, export
    from cnnlab.commands import reproduce
    from cnnlab.data import sources
    from cnnlab.experiments import budget

    assert tuple(sources.LOADERS) == choices.DATASETS
    assert tuple(experiments.CLAIMS) == reproduce.CLAIMS
    assert {g: tuple(c) for g, c in experiments.GROUPS.items()} == reproduce.GROUPS
    assert tuple(experiments.COMPUTED) == reproduce.COMPUTED
    assert tuple(budget.BUDGETS) == reproduce.BUDGETS
    assert export.FORMATS == choices.EXPORT_FORMATS


def test_every_command_lives_in_the_commands_package() -> None:
    """Each sub-command's body is a public `run_<command>` in cnnlab/commands/, beside its flags: no command
    code in the library modules."""
    import importlib

    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in choices.items():
        func = sub.get_default("func")
        module, function = (func.module, func.function) if isinstance(func, commands.Lazy) else (
            func.__module__, func.__name__)  # fmt: skip
        assert module.startswith("cnnlab.commands.") and function == f"run_{name}", (name, module, function)
        assert callable(getattr(importlib.import_module(module), function)), (name, module, function)


def test_the_program_is_main_then_an_exit_the_collector_does_not_sweep() -> None:
    """`cnnlab` (the console script, `python -m cnnlab`) returns main's exit code and leaves its objects
    frozen out of the cyclic collector, whose sweep at interpreter exit cost each torch command ~0.4 s."""
    script = (
        "import gc, sys\nfrom cnnlab import cli\nsys.argv = ['cnnlab', *sys.argv[1:]]\n"
        "code = cli.entry()\nprint(code, gc.get_freeze_count() > 0)"
    )
    for argv, code in ((["models"], 0), (["summary", "alexnet_fastt"], 2)):
        done = subprocess.run(
            [sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.stdout.strip().splitlines()[-1] == f"{code} True", done.stdout + done.stderr
    config = (ROOT / "pyproject.toml").read_text()
    assert 'cnnlab = "cnnlab.cli:entry"' in config
    assert "entry()" in (ROOT / "cnnlab" / "__main__.py").read_text()
