"""The resume rules: the checkpoint a `--resume` continues, the settings it may change, and the data it
must find again. Everything here only reads; a refusal changes nothing.

A run of the user's own network (`--model FILE.py:Class`) resumes only with the same `--model` on the
command line: cnnlab never imports code that a checkpoint names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab import argtypes, checkpoint
from cnnlab.errors import CnnlabError
from cnnlab.models import user
from cnnlab.models.registry import coerce_switch
from cnnlab.settings import (
    MODEL_SWITCHES,
    PER_INVOCATION,
    RESUME_MAY_CHANGE,
    TrainConfig,
    flag,
    parse_model_options,
)
from cnnlab.training import recipes
from cnnlab.training.runfolder import RunFolder, check_dir


def checkpoint_to_resume(folder: RunFolder) -> dict[str, Any]:
    check_dir(folder.root, resume=True, overwrite=False)  # only a folder cnnlab marked is resumed
    if not folder.last.is_file():
        why = "; drop --resume to start a new run"
        if folder.config.is_file():
            why = " (it stopped before its first checkpoint): run the same command without --resume"
        raise CnnlabError(f"nothing to resume in {folder.root}: no checkpoints/last.pt{why}")
    return checkpoint.load(folder.last)


def saved_config(saved: dict[str, Any], where: object) -> TrainConfig:
    """The settings a checkpoint recorded."""
    return TrainConfig.from_dict(saved["config"], str(where))


def resume_config(asked: Mapping[str, Any], saved: dict[str, Any], folder: RunFolder) -> TrainConfig:
    """The run's saved config with the few settings a resumed run may change; refuse any other change."""
    run = saved_config(saved, folder.last)
    given = set(asked)
    plain = TrainConfig().replace(**asked)
    name = str(saved["model_name"])
    where = f"the run in {folder.root} trained {name} with {saved['num_classes']} classes"
    if user.is_user_spec(name) and "model" not in given:
        raise CnnlabError(
            f"--resume: the run in {folder.root} trained a network of your own; cnnlab never imports code a "
            "checkpoint names: pass --model path/to/your_file.py:YourClass, the file it was trained from"
        )
    if "model" in given and not same_network(plain.model, name):
        raise CnnlabError(
            f"--resume: {folder.last} holds model {name!r}, not {plain.model!r}; "
            "drop --model or use another --out"
        )
    # An image folder that moved is the same data when its content hash says so (`check_same_data`).
    moved = "dataset" in given and plain.dataset != run.dataset
    if moved and not (plain.dataset.startswith("folder:") and run.dataset.startswith("folder:")):
        raise CnnlabError(
            f"--resume: {where} on {run.dataset!r}, not {plain.dataset!r}; "
            "drop --dataset or use another --out"
        )
    _refuse_changes(asked, given - _same_split(asked, run, saved), run)
    changes: dict[str, Any] = {name: asked[name] for name in given & (RESUME_MAY_CHANGE - PER_INVOCATION)}
    if moved:
        changes["dataset"] = plain.dataset
    merged = run.replace(
        **changes,
        out=str(folder.root),  # the folder may have moved since
        resume=True,
        overwrite=False,
        device=plain.device,
        workers=plain.workers,
        progress=plain.progress,
        stop_after=plain.stop_after,
        download=plain.download,
    )
    trained = int(saved["epoch"]) + (1 if int(saved["step"]) else 0)  # a started epoch counts
    if merged.epochs < trained:
        raise CnnlabError(
            f"--epochs {merged.epochs} is fewer than the {trained} epochs this run has trained"
            f"{' (the last one in part)' if int(saved['step']) else ''}; a run cannot be shortened: pass "
            f"--epochs {trained} or more, or start a new run with another --out"
        )
    if merged.schedule == "onecycle" and merged.epochs != run.epochs:
        raise CnnlabError(
            f"--epochs {merged.epochs}: a onecycle schedule is fixed to its {run.epochs} epochs and cannot "
            "be stretched; start a new run with another --out"
        )
    return merged


def same_network(asked: str, recorded: str) -> bool:
    """The same zoo name, or the same file (wherever the command runs from) and class, or module and attr."""
    if not (user.is_user_spec(asked) and user.is_user_spec(recorded)):
        return asked == recorded
    (a, a_attr), (b, b_attr) = user.split_spec(asked), user.split_spec(recorded)
    if a_attr != b_attr:
        return False
    return a == b or (a.endswith(".py") and b.endswith(".py") and Path(a).resolve() == Path(b).resolve())


def _refuse_changes(asked: Mapping[str, Any], given: set[str], run: TrainConfig) -> None:
    """A resumed run keeps its settings: any other flag given must say what the run already has."""
    changed = []
    for name in sorted(given - RESUME_MAY_CHANGE - {"model", "dataset", "model_opt", *MODEL_SWITCHES}):
        have = getattr(run, name)
        if asked[name] != have:
            changed.append(f"{flag(name)} {asked[name]!r} differs from the run's {have!r}")
    for key, value in parse_model_options(asked).items():
        have = run.model_options.get(key)
        if have is None or not _same_option(key, value, have):
            name = flag(key) if key in MODEL_SWITCHES else f"--model-opt {key}"
            changed.append(f"{name} {value!r} differs from the run's {have!r}")
    if changed:
        them = "that flag" if len(changed) == 1 else "those flags"
        raise CnnlabError(
            f"--resume keeps the run's settings: {'; '.join(changed)}; drop {them}, "
            "or start a new run with another --out"
        )


def _same_split(asked: Mapping[str, Any], run: TrainConfig, saved: dict[str, Any]) -> set[str]:
    """{"val_split"} when --val-split, a count or a fraction, asks for the split the run holds out."""
    if "val_split" not in asked:
        return set()
    trained_on = saved.get("dataset", {}).get("count") if isinstance(saved.get("dataset"), dict) else None
    if not isinstance(trained_on, int):
        return set()
    try:
        same = recipes.held_out(asked["val_split"], 0.0, trained_on + int(run.val_split)) == run.val_split
    except CnnlabError:
        return set()
    return {"val_split"} if same else set()


def _same_option(key: str, value: Any, have: Any) -> bool:
    """A flag's value (a CLI string for --model-opt) against the typed value the run recorded."""
    if str(value) == str(have) or argtypes.literal(value) == have:
        return True
    try:
        return bool(coerce_switch(key, value, have) == have)
    except CnnlabError:
        return False


def check_same_data(
    folder: RunFolder, saved: dict[str, Any], train_ds: Any, val_ds: Any, test_ds: Any, cfg: TrainConfig
) -> None:
    """Refuse to resume on data other than the run's: the checkpoint records the training set's identity
    and config.json the validation and test sets', each with a content hash (`identity()`). --data-dir
    may change, and so may an image folder's place: the same files elsewhere hash the same. A run that
    recorded no hash is not checked, unless its folder moved (then nothing could tell it is the same)."""
    if int(saved["num_classes"]) != len(train_ds.classes):
        raise CnnlabError(
            f"--resume: the checkpoint's {saved['model_name']} has {saved['num_classes']} classes, "
            f"data set {cfg.dataset!r} has {len(train_ds.classes)}"
        )
    moved = cfg.dataset != saved_config(saved, folder.last).dataset
    try:
        recorded = json.loads(folder.config.read_text())["data"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    sets = [("training", saved.get("dataset"), train_ds), ("validation", recorded.get("val"), val_ds)]
    if test_ds is not val_ds:  # a held-out split: the test set is reported apart
        sets.append(("test", recorded.get("test"), test_ds))
    for what, rec, ds in sets:
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            if moved:
                raise CnnlabError(
                    f"--resume with --dataset {ds.name!r}: the run in {folder.root} recorded no content "
                    f"hash of its {what} data, so cnnlab cannot tell the moved folder is the same; "
                    "pass its old --dataset"
                )
            continue
        now = ds.identity()
        if now["sha256"] != rec["sha256"] or now["count"] != rec.get("count"):
            raise CnnlabError(
                f"--resume: the {what} data of {ds.name!r} differs from the data the run in {folder.root} "
                f"used ({rec.get('count')} images, content hash {rec['sha256'][:12]} recorded; now "
                f"{now['count']} images, {now['sha256'][:12]}); point --data-dir at the run's data, "
                "or start a new run with another --out"
            )
