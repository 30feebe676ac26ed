"""Training: what `cnnlab train` does, one file per job.

    config.py     TrainConfig (the flags, as asked) and RunConfig (every setting of a run, resolved)
    recipes.py    the paper and fast recipes, resolve(), the learning-rate schedule, the optimiser
    setup.py      build_run(): resume rules, data, model, preprocessing, loaders, optimiser
    loop.py       Loop: the epochs and steps, validation, checkpoint writes; owns position and history
    signals.py    Ctrl-C and SIGTERM: stop at once before the first step, after a step from then on
    runfolder.py  the run folder: its paths, lock and marker, and when it may be created or cleared
    records.py    config.json, metrics.csv, TensorBoard, summary.txt
    distributed.py  torchrun/DDP as a mode of the same loop
    main.py       train(): set up, open the folder, loop, finish
    command.py    the `cnnlab train` command's flags (torch-free: parsing imports nothing heavy)

A "run" is one training run and its folder (--out): `Run` is a run set up, `RunConfig` its settings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunConfig", "TrainConfig", "TrainResult", "train"]


def __getattr__(name: str) -> Any:
    # Imported on first use: evaluate.py needs training.distributed, and the loop needs evaluate.py.
    if name in ("RunConfig", "TrainConfig"):
        from cnnlab.training import config

        return getattr(config, name)
    if name in ("TrainResult", "train"):
        from cnnlab.training import main

        return getattr(main, name)
    raise AttributeError(f"module 'cnnlab.training' has no attribute {name!r}")
