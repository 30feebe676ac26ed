"""Training: what `cnnlab train` does, one file per job. Its settings are cnnlab/settings.py's TrainConfig.

    recipes.py    resolve() (defaults <- recipe <- what the user gave <- derived), the lr schedule, SGD
    build.py      build_run(): resume rules, data, model, preprocessing, loaders, optimiser
    loop.py       Loop: the epochs and steps, validation, checkpoint writes; owns position and history
    signals.py    Ctrl-C and SIGTERM: stop at once before the first step, after a step from then on
    runfolder.py  the run folder: its paths, lock and marker, and when it may be created or cleared
    records.py    config.json, metrics.csv, TensorBoard, summary.txt
    distributed.py  torchrun/DDP as a mode of the same loop
    main.py       train(): set up, open the folder, loop, finish

A "run" is one training run and its folder (--out): `Run` is a run set up, its `cfg` the resolved settings.
"""

from __future__ import annotations

from cnnlab.settings import TrainConfig
from cnnlab.training.main import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
