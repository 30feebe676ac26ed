"""The training loop: one function, `train(cfg)`, for one process, one GPU or many (torchrun).

The loop is written for speed and for exact resumption:
- no per-step host syncs beyond what the progress display needs: sums stay on the device;
- the data order and augmentation of step s of epoch e come from (seed, epoch, step) (`BatchLoader`), and
  the dropout generator is re-seeded from (seed, rank, epoch, step) before every step, so a run resumed
  from any checkpoint replays exactly the steps an uninterrupted run takes (bit-exact on the CPU);
- Ctrl-C / SIGTERM finish the current step, save a checkpoint with the mid-epoch position and stop;
  before the first step (reading data, building the model) they stop at once, as nothing is to be saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, distributed, recipes, report, runfolder, runs
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import Accumulator, view_probs
from cnnlab.recipes import TrainConfig
from cnnlab.runfolder import RunLock
from cnnlab.runs import RunSetup, prepare

__all__ = ["RunResult", "StoppedBeforeStart", "TrainConfig", "register_cli", "train"]


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    model: nn.Module
    config: TrainConfig
    stopped: str | None = None  # why the run stopped early ("SIGTERM", "stop_after"), None when complete
    extra: dict[str, Any] = field(default_factory=dict)


class StoppedBeforeStart(KeyboardInterrupt):
    """SIGINT or SIGTERM before the first training step: nothing to save. `cnnlab train` prints the message
    and exits with 128 + the signal's number, as after a stop mid-run."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class _Interrupt(BaseException):
    # Not an Exception: the data readers' `except Exception` (a broken file) must not swallow it.
    pass


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop polls after each step (handlers restored on exit). While
    `immediate` (the set-up, before the folder is written) a signal raises `_Interrupt` at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.immediate = False
        self.saving = False  # a checkpoint is being written: even a second Ctrl-C waits for it
        self.forced = False

    @contextlib.contextmanager
    def saving_checkpoint(self) -> Iterator[None]:
        """Defer a second Ctrl-C until the checkpoint is written: raised inside torch's zip writer it would
        surface as a long traceback (the files stay intact either way)."""
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.forced:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if self.signal_name is not None and signum == signal.SIGINT:
                if self.saving:
                    self.forced = True
                    return
                raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
            self.signal_name = signal.Signals(signum).name
            if self.immediate:
                self.immediate = False  # one _Interrupt only: a second signal must not hit its handler
                raise _Interrupt

        try:
            for sig in (int(signal.SIGINT), int(signal.SIGTERM)):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling, the loop still runs
            pass
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _step_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    # A fixed mix (not Python's hash) so dropout masks are the same in every run and Python version.
    s = seed & 0xFFFFFFFFFFFFFFFF
    for v in (rank, epoch, step):
        s = (s * 6364136223846793005 + v + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return s >> 1


def _amp_dtype(cfg: TrainConfig) -> torch.dtype | None:
    if not cfg.amp:
        return None
    return torch.float16 if cfg.amp_dtype == "fp16" else torch.bfloat16


def _autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    dtype = _amp_dtype(cfg)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


class _Loop:
    def __init__(self, run: RunSetup, stop: _StopRequest) -> None:
        self.run, self.cfg, self.ctx = run, run.cfg, run.ctx
        cfg, ctx = self.cfg, self.ctx
        self.raw = run.model  # the plain module: its state_dict is what checkpoints hold
        self.net: nn.Module = self.raw
        if cfg.compile:
            self.net = torch.compile(self.raw)  # type: ignore[assignment]
        self.train_net: nn.Module = self.net
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.train_net = DistributedDataParallel(self.net, device_ids=ids)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(cfg.label_smoothing or 0.0))
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        use_scaler = bool(cfg.amp and cfg.amp_dtype == "fp16" and ctx.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        if run.resume_ckpt is not None and run.resume_ckpt.get("scaler"):
            self.scaler.load_state_dict(run.resume_ckpt["scaler"])
        # How often ranks agree on stop requests and the loss check: every step alone on the CPU (free),
        # else every 25 steps (a host sync on GPUs, a collective when distributed).
        self.check_every = 1 if (ctx.device.type == "cpu" and not ctx.distributed) else 25
        self.progress = report.Progress(cfg.progress if ctx.is_main else "none")
        self.stop = stop  # installed by train() before anything else
        self.steps_this_run = 0

    # -- one epoch ----------------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, start: int, partial: dict[str, Any] | None) -> dict[str, Any] | None:
        """Train from `start`; returns the epoch's sums, or None after a stop request (checkpoint saved)."""
        cfg, ctx, run = self.cfg, self.ctx, self.run
        from cnnlab import models

        dev = ctx.device
        steps = len(run.train_loader)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        count, seconds = 0, 0.0
        if partial:
            loss_sum += partial["loss_sum"].to(dev)
            correct += partial["correct"].to(dev)
            count, seconds = int(partial["count"]), float(partial["seconds"])
        bad_step = torch.full((), -1, dtype=torch.int64, device=dev)
        self.train_net.train()
        self.progress.start(f"epoch {epoch + 1}/{cfg.epochs}", steps, start)
        t0 = time.perf_counter()
        step = start - 1
        for step, (x, y) in enumerate(run.train_loader.epoch(epoch, start), start=start):
            gstep = epoch * steps + step
            lr = run.schedule.lr(gstep)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(_step_seed(cfg.seed, ctx.rank, epoch, step))
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(cfg, dev):
                logits, aux = models.split_outputs(self.train_net(x))
                loss = self.criterion(logits, y)
                for a in aux:
                    loss = loss + models.AUX_WEIGHT * self.criterion(a, y)
            run.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(run.optimizer)
            self.scaler.update()
            n = y.shape[0]
            loss_d = loss.detach()
            loss_sum += loss_d.double() * n
            correct += (logits.detach().argmax(1) == y).sum()
            count += n
            self.steps_this_run += 1
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_d), gstep, bad_step)
            if self.progress.due(step):
                self.progress.update(
                    step + 1, count * ctx.world_size, loss_sum.item() / count, correct.item() / count
                )
            if (step + 1) % self.check_every == 0 or step + 1 == steps:
                stop = self._check(int(bad_step.item()), epoch, steps)
                if stop:
                    seconds += time.perf_counter() - t0
                    sums = {
                        "loss_sum": loss_sum.cpu(),
                        "correct": correct.cpu(),
                        "count": count,
                        "seconds": seconds,
                    }
                    self._save(epoch, step + 1, sums)
                    self.progress.end()
                    return None
        self.progress.end()
        if step + 1 != steps:  # the loader ended early: a programming error, not a user one
            raise RuntimeError(f"train loader yielded {step + 1} of {steps} steps")
        seconds += time.perf_counter() - t0
        return {"loss_sum": loss_sum, "correct": correct, "count": count, "seconds": seconds}

    def _check(self, bad_gstep: int, epoch: int, steps: int) -> bool:
        """Raise on a non-finite loss (no checkpoint written); True when a stop was requested."""
        cfg, ctx = self.cfg, self.ctx
        bad = distributed.any_rank(bad_gstep >= 0, ctx.device)
        if bad:
            at = (
                f"step {bad_gstep % steps + 1} of epoch {bad_gstep // steps + 1}"
                if bad_gstep >= 0
                else (f"epoch {epoch + 1} (another rank)")
            )
            last = self.run.dir / "checkpoints" / "last.pt"
            kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint yet"
            raise CnnlabError(
                f"the training loss became non-finite at {at}; stopped, {kept} "
                "(lower --lr, or try --init kaiming / --batch-norm)"
            )
        want = self.stop.signal_name is not None or (
            cfg.stop_after is not None and self.steps_this_run >= cfg.stop_after
        )
        return distributed.any_rank(want, ctx.device) if ctx.distributed else want

    # -- checkpoints --------------------------------------------------------------------------------------
    def _save(self, epoch: int, step: int, partial: dict[str, Any] | None, best: bool = False) -> None:
        # Rank 0 writes; a failed write (a full disk) stops every rank with the same message.
        with self.stop.saving_checkpoint():
            distributed.on_main(self.ctx, lambda: self._write(epoch, step, partial, best))

    def _write(self, epoch: int, step: int, partial: dict[str, Any] | None, best: bool) -> None:
        run = self.run
        ckpt = run.checkpoint_base()
        ckpt.update(
            model=self.raw.state_dict(),
            optimizer=run.optimizer.state_dict(),
            scheduler=run.schedule.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            epoch=epoch,
            step=step,
            partial=partial or {},
            metrics=list(run.history),
            best_val_top1_err=run.best_err,
        )
        last, best_path = run.dir / "checkpoints" / "last.pt", run.dir / "checkpoints" / "best.pt"
        if best:
            # best.pt before last.pt: a kill between the two leaves last.pt one epoch behind, and the
            # resumed run redoes that epoch and rewrites both (last.pt first would leave best.pt stale).
            checkpoint.save(ckpt, best_path)
            checkpoint.copy(best_path, last)
        else:
            checkpoint.save(ckpt, last)
        runfolder.mark_checkpointed(run.dir)  # from now on a restart may not clear this folder

    # -- the whole run ------------------------------------------------------------------------------------
    def run_all(self) -> str | None:
        cfg, run = self.cfg, self.run
        assert cfg.epochs is not None
        epoch, start, partial = run.position
        while epoch < cfg.epochs:
            sums = self._train_epoch(epoch, start, partial)
            if sums is None:
                return self.stop.signal_name or "stop_after"
            row = self._end_epoch(epoch, sums)
            improved = row["val_top1_err"] < run.best_err
            if improved:
                run.best_err = row["val_top1_err"]
            run.schedule.end_epoch(row["val_top1_err"])
            # The checkpoint holds the history through this epoch; metrics.csv follows it.
            run.history.append(row)
            self._save(epoch + 1, 0, None, best=improved)
            run.epoch_done(row)
            self.progress.print(report.epoch_line(row, cfg.epochs))
            epoch, start, partial = epoch + 1, 0, None
        return None

    def _end_epoch(self, epoch: int, sums: dict[str, Any]) -> dict[str, Any]:
        run, ctx = self.run, self.ctx
        totals = torch.stack(
            [
                sums["loss_sum"].to(ctx.device),
                sums["correct"].to(ctx.device).double(),
                torch.tensor(float(sums["count"]), dtype=torch.float64, device=ctx.device),
            ]
        )
        distributed.all_reduce_sum(totals)
        loss_sum, correct, count = totals.tolist()
        val = self.validate()
        steps = len(run.train_loader)
        return {
            "epoch": epoch + 1,
            "lr": run.schedule.lr((epoch + 1) * steps - 1),
            "train_loss": loss_sum / count,
            "train_top1_err": 1.0 - correct / count,
            "val_loss": val["loss"],
            "val_top1_err": val["top1_err"],
            "val_top5_err": val["top5_err"],
            "epoch_seconds": sums["seconds"],
            "images_per_s": count / sums["seconds"] if sums["seconds"] > 0 else 0.0,
        }

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        run = self.run
        self.net.eval()
        acc = Accumulator(run.num_classes, self.ctx.device)
        for x, y in run.val_loader.epoch(0):
            # The paper's multi-view test (section 4.1): the softmax averaged over the views.
            acc.update(view_probs(self.net, x, _amp_dtype(self.cfg), bool(self.cfg.channels_last)), y)
        self.net.train()
        return acc.result(reduce=True)


def train(cfg: TrainConfig, given: set[str] | None = None) -> RunResult:
    """Train (or resume) one run; the Python API behind `cnnlab train`.

    `given` names the settings the user chose (the CLI passes the flags given); a resumed run refuses
    to change any other. From Python, every field differing from TrainConfig's default counts as given.
    """
    if not cfg.resume and not (cfg.model and cfg.dataset):
        raise CnnlabError("--model and --dataset are required (or --resume --out RUN to continue a run)")
    if cfg.resume and not cfg.out and not (cfg.model and cfg.dataset):
        raise CnnlabError("--resume needs the run folder: --out RUN")
    if given is None:
        default = TrainConfig()
        given = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
    stop, lock = _StopRequest(), RunLock()
    again = "run the same command again"
    if cfg.resume:
        again = f"continue with: cnnlab train --out {runs.default_out(cfg)} --resume"
    # Installed first: a signal while the data is read and the model built stops the process at once,
    # with one line and no traceback; from the first write to the folder on, it waits for a step's end.
    with stop.installed():
        stop.immediate = True
        ctx: distributed.Context | None = None
        try:
            try:
                ctx = distributed.setup(cfg.device)
                run = prepare(cfg, given, ctx, lock)
                loop = _Loop(run, stop)
                stop.immediate = False
            except _Interrupt:
                raise StoppedBeforeStart(
                    str(stop.signal_name), _before_start(stop, "nothing was written", again)
                ) from None
            run.open_folder()
            if stop.signal_name is not None and not run.already_complete:
                raise StoppedBeforeStart(stop.signal_name, _before_start(stop, "nothing to save", again))
            return _run(run, loop)
        finally:
            lock.release()
            if ctx is not None:
                distributed.teardown(ctx)


def _before_start(stop: _StopRequest, what: str, again: str) -> str:
    return f"stopped by {stop.signal_name} before the first training step; {what}; {again}"


def _run(run: RunSetup, loop: _Loop) -> RunResult:
    """The loop, then the folder's last files (train() holds the signal handler and the folder's lock)."""
    if run.already_complete:
        stopped = None
        run.say(f"{run.dir} is complete ({run.cfg.epochs} epochs); pass a larger --epochs to continue it")
    else:
        stopped = loop.run_all()
    final = run.finish(stopped)
    if stopped is not None and run.ctx.is_main:
        epoch, step, _ = run.position_of_last()
        how = "on request (--stop-after)" if stopped == "stop_after" else f"by {stopped}"
        run.say(
            f"stopped {how} in epoch {epoch + 1} after step {step}; checkpoint saved to "
            f"{run.dir / 'checkpoints' / 'last.pt'}; continue with: cnnlab train --out {run.dir} --resume"
        )
    return RunResult(run.dir, list(run.history), final, loop.raw, run.cfg, stopped)


def _cmd_train(args: Any) -> int:
    cfg, given = recipes.from_args(args)
    try:
        result = train(cfg, given)
    except StoppedBeforeStart as exc:
        print(f"cnnlab: {exc}", file=sys.stderr)
        return 128 + int(getattr(signal, exc.signal_name))
    if result.stopped in ("SIGINT", "SIGTERM"):
        return 128 + int(getattr(signal, result.stopped))
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (paper or fast recipe), resumable, distributed with torchrun",
        description="Train a model. Writes config.json, metrics.csv, curves.png, checkpoints/ and "
        "summary.txt into --out. Run with torchrun for distributed data parallel training.",
    )
    recipes.add_arguments(p)
    p.set_defaults(func=_cmd_train)


if __name__ == "__main__":  # pragma: no cover - `python -m cnnlab train` is the entry point
    sys.exit(1)
