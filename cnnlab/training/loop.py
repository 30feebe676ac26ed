"""The training loop of one run: epochs of steps, validation, checkpoints. `Loop` owns the run's position
(epoch, step, the partial epoch's sums), its history (one row per epoch) and its best validation error.

Written for speed and for exact resumption:
- no per-step host syncs beyond what the progress display needs: sums stay on the device;
- the data order and augmentation of step s of epoch e come from (seed, epoch, step) (`BatchLoader`), and
  the dropout generator is re-seeded from (seed, rank, epoch, step) before every step, so a run resumed
  from any checkpoint replays exactly the steps an uninterrupted run takes (bit-exact on the CPU);
- a stop request (signals.py) finishes the current step and saves a checkpoint with the mid-epoch position.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import torch
from torch import nn

from cnnlab import models, report
from cnnlab.device import amp_dtype, autocast, precision_words
from cnnlab.errors import NonFiniteLoss
from cnnlab.evaluate import Accumulator, view_probs
from cnnlab.training import checkpoints, distributed, plan, records, runfolder
from cnnlab.training.build import Run
from cnnlab.training.signals import StopRequest


def step_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    # A fixed mix (not Python's hash) so dropout masks are the same in every run and Python version.
    s = seed & 0xFFFFFFFFFFFFFFFF
    for v in (rank, epoch, step):
        s = (s * 6364136223846793005 + v + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return s >> 1


class Loop:
    def __init__(self, run: Run, stop: StopRequest, lock: runfolder.RunLock) -> None:
        self.run, self.cfg, self.ctx, self.stop, self.lock = run, run.cfg, run.ctx, stop, lock
        cfg, ctx = self.cfg, self.ctx
        self.raw = run.model  # the plain module: its state_dict is what checkpoints hold
        self.net: nn.Module = torch.compile(self.raw) if cfg.compile else self.raw  # type: ignore[assignment]
        self.train_net: nn.Module = self.net
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.train_net = DistributedDataParallel(self.net, device_ids=ids)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        use_scaler = cfg.amp_dtype == "fp16" and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        # How often ranks agree on stop requests and the loss check: every step alone on the CPU (free),
        # else every 25 steps (a host sync on GPUs, a collective when distributed).
        self.check_every = 1 if (ctx.device.type == "cpu" and not ctx.distributed) else 25
        self.progress = report.Progress(cfg.progress if ctx.is_main else "none")
        self.steps_this_invocation = 0
        # The run's position and record: restored from the checkpoint when resuming.
        self.history: list[dict[str, Any]] = []
        self.best_err = math.inf
        self.epoch, self.step = 0, 0
        self.partial: dict[str, Any] | None = None  # the sums of an epoch stopped part-way
        if run.resumed_from is not None:
            self._restore(run.resumed_from)
        self.epoch_log: records.EpochLog | None = None
        # (epoch, result with probabilities) of the last epoch's test evaluation: report.html uses it.
        self.measured: tuple[int, dict[str, Any]] | None = None
        self.curves: bytes | None = None  # the curves.png drawn at the end, for report.html
        steps = len(run.train_loader)
        self.eta = plan.Eta(cfg.epochs * steps, self.epoch * steps + self.step, cfg.epochs - self.epoch)

    def _restore(self, saved: dict[str, Any]) -> None:
        at = checkpoints.position_of(saved)
        self.history, self.best_err = at.history, at.best_err
        self.epoch, self.step, self.partial = at.epoch, at.step, at.partial
        checkpoints.restore_scaler(saved, self.scaler)

    @property
    def complete(self) -> bool:
        return self.epoch >= self.cfg.epochs

    def say(self, text: str) -> None:
        self.progress.print(text)

    # -- the folder ---------------------------------------------------------------------------------------
    def open_folder(self) -> None:
        """Lock and create (or reopen) the run folder, write config.json and metrics.csv: the first writes
        of a run, made once every setting has been checked."""
        cfg, folder = self.cfg, self.run.folder
        distributed.on_main(
            self.ctx, lambda: runfolder.prepare_dir(folder.root, cfg.resume, cfg.overwrite, self.lock)
        )
        if self.ctx.is_main:
            records.write_config(folder, cfg, records.config_facts(self.run))
            report.write_metrics(folder.metrics, self.history, self.run.held_out)
            self.epoch_log = records.EpochLog(folder, self.run.held_out)
            if self.epoch_log.note:
                self.say(self.epoch_log.note)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.raw.parameters())

    def train_mode(self) -> None:
        """Training mode, except the batch norms of frozen layers (they keep their statistics)."""
        self.train_net.train()
        if self.run.frozen is not None:
            self.run.frozen.keep_eval()

    # -- the whole run ------------------------------------------------------------------------------------
    def run_epochs(self) -> str | None:
        """Train to the last epoch; returns why it stopped early ("SIGTERM", "stop_after"), or None."""
        for line in [
            *self.run.notes,
            *plan.plan_lines(self.cfg, self.run, str(self.ctx.device), self.parameters),
        ]:
            self.say(line)
        if self.run.resumed_from is not None:
            steps = len(self.run.train_loader)
            self.say(plan.resume_line(self.run.folder.last, self.epoch, self.step, steps, self.cfg.epochs))
        while not self.complete:
            sums = self._train_epoch(self.epoch, self.step, self.partial)
            if sums is None:
                return self.stop.signal_name or "stop_after"
            row = self._end_epoch(self.epoch, sums)
            improved = row["val_top1_err"] < self.best_err
            if improved:
                self.best_err = row["val_top1_err"]
            self.run.schedule.end_epoch(row["val_top1_err"])
            # The checkpoint holds the history through this epoch; metrics.csv follows it.
            self.history.append(row)
            self.epoch, self.step, self.partial = self.epoch + 1, 0, None
            # best.pt is chosen on a held-out split only; without one it is the last epoch (the test set
            # chooses nothing).
            self._save(best=improved or not self.run.held_out)
            if self.epoch_log is not None:
                self.epoch_log.write(self.history)
            announced = self.eta.announcement(epoch_over=True)
            if announced:
                self.say(announced)
            self.say(report.epoch_line(row, self.cfg.epochs, self.run.held_out, self.eta.remaining()))
        return None

    # -- one epoch ----------------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, start: int, partial: dict[str, Any] | None) -> dict[str, Any] | None:
        """Train from `start`; returns the epoch's sums, or None after a stop request (checkpoint saved)."""
        cfg, ctx, run = self.cfg, self.ctx, self.run
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
        self.train_mode()
        compiling = self._compiling_now()
        self.progress.start(f"epoch {epoch + 1}/{cfg.epochs}", steps, start)
        t0 = time.perf_counter()
        step = start - 1
        for step, (x, y) in enumerate(run.train_loader.epoch(epoch, start), start=start):
            gstep = epoch * steps + step
            logits, loss = self._step(x, y, epoch, step, gstep)
            n = y.shape[0]
            loss_d = loss.detach()
            loss_sum += loss_d.double() * n
            correct += (logits.detach().argmax(1) == y).sum()
            count += n
            self.steps_this_invocation += 1
            if compiling:
                compiling = False
                self.say(f"compile: the training step compiled and ran in {time.perf_counter() - t0:.1f} s")
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss_d), gstep, bad_step)
            self.eta.step()
            announced = self.eta.announcement()
            if announced:
                self.say(announced)
            if self.progress.due(step):
                self.progress.update(
                    step + 1, count * ctx.world_size, loss_sum.item() / count, correct.item() / count,
                    self.eta.remaining() if self.eta.announced else None,
                )  # fmt: skip
            if ((step + 1) % self.check_every == 0 or step + 1 == steps) and self._must_stop(
                int(bad_step.item()), epoch, steps
            ):
                seconds += time.perf_counter() - t0
                self.step = step + 1
                self.partial = {
                    "loss_sum": loss_sum.cpu(), "correct": correct.cpu(), "count": count, "seconds": seconds,
                }  # fmt: skip
                self._save(best=False)
                self.progress.end()
                return None
        self.progress.end()
        if step + 1 != steps:  # the loader ended early: a programming error, not a user one
            raise RuntimeError(f"train loader yielded {step + 1} of {steps} steps")
        seconds += time.perf_counter() - t0
        return {"loss_sum": loss_sum, "correct": correct, "count": count, "seconds": seconds}

    def _compiling_now(self) -> bool:
        """True (and said) when this step is the first one torch.compile compiles."""
        compiling = self.cfg.compile and self.steps_this_invocation == 0
        if compiling:
            # torch.compile works during the first step (and the first evaluation): a minute or more on a
            # CPU with nothing on screen otherwise. The ETA's pace starts after it (plan.WARMUP_STEPS).
            self.say("compile: torch.compile is compiling the training step (the first step; often a minute "
                     "or more on a CPU); the ETA leaves compilation out")  # fmt: skip
        return compiling

    def _step(
        self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int, gstep: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on the batch (x, y) at global step `gstep`: the schedule's rate, dropout seeded
        from the position, the loss (with GoogLeNet's auxiliary heads), the update. Returns (logits, loss)."""
        cfg, run = self.cfg, self.run
        lr = run.schedule.lr(gstep)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(cfg.seed, self.ctx.rank, epoch, step))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(amp_dtype(cfg.amp_dtype), self.ctx.device.type):
            logits, aux = models.split_outputs(self.train_net(x))
            loss = self.criterion(logits, y)
            for a in aux:  # GoogLeNet's auxiliary classifiers (its section 5)
                loss = loss + models.AUX_LOSS_WEIGHT * self.criterion(a, y)
        run.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(run.optimizer)
        self.scaler.update()
        return logits, loss

    def _must_stop(self, bad_gstep: int, epoch: int, steps: int) -> bool:
        """Raise on a non-finite loss (no checkpoint written); True when a stop was requested."""
        if distributed.any_rank(bad_gstep >= 0, self.ctx.device):
            at = (
                f"step {bad_gstep % steps + 1} of epoch {bad_gstep // steps + 1}"
                if bad_gstep >= 0
                else f"epoch {epoch + 1} (another rank)"
            )
            last = self.run.folder.last
            kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint yet"
            raise NonFiniteLoss(
                f"the training loss became non-finite at {at}; stopped, {kept} "
                "(lower --lr, or try --init kaiming / --batch-norm)"
            )
        stop_after = self.cfg.stop_after
        want = self.stop.signal_name is not None or (0 < stop_after <= self.steps_this_invocation)
        return distributed.any_rank(want, self.ctx.device) if self.ctx.distributed else want

    def _end_epoch(self, epoch: int, sums: dict[str, Any]) -> dict[str, Any]:
        dev = self.ctx.device
        totals = torch.stack(
            [
                sums["loss_sum"].to(dev),
                sums["correct"].to(dev).double(),
                torch.tensor(float(sums["count"]), dtype=torch.float64, device=dev),
            ]
        )
        distributed.all_reduce_sum(totals)
        loss_sum, correct, count = totals.tolist()
        t0 = time.perf_counter()
        first_compiled = self.cfg.compile and self.eta.evaluations == 0
        if first_compiled:
            self.say("compile: compiling the evaluation graph (the first evaluation; the ETA leaves it out)")
        # The last epoch keeps its test probabilities (when they are small) for report.html's confusion
        # matrix and mistakes, which would otherwise evaluate the same net on the same images again.
        run = self.run
        keep = (
            epoch + 1 == self.cfg.epochs
            and not self.ctx.distributed
            and len(run.test_ds) * len(run.classes) <= 10_000_000
        )
        val = self.validate(run.val_loader, keep=keep and run.test_loader is None)
        # Without a held-out split the validation set is the test set: the same numbers, measured once.
        test = val if run.test_loader is None else self._test(epoch, keep)
        if keep:
            self.measured = (epoch + 1, test)
        self.eta.evaluated(time.perf_counter() - t0, compiling=first_compiled)
        steps = len(self.run.train_loader)
        row = {
            "epoch": epoch + 1,
            "lr": self.run.schedule.lr((epoch + 1) * steps - 1),
            "train_loss": loss_sum / count,
            "train_top1_err": 1.0 - correct / count,
            "val_loss": val["loss"],
            "val_top1_err": val["top1_err"],
            "val_top5_err": val["top5_err"],
            "test_loss": test["loss"],
            "test_top1_err": test["top1_err"],
            "test_top5_err": test["top5_err"],
            "epoch_seconds": sums["seconds"],
            "images_per_s": count / sums["seconds"] if sums["seconds"] > 0 else 0.0,
        }
        return {k: report.tidy(v) if isinstance(v, float) else v for k, v in row.items()}

    def _test(self, epoch: int, keep: bool = False) -> dict[str, Any]:
        """The test set's numbers: after every epoch, or with --no-test-each-epoch after the last only."""
        if self.cfg.test_each_epoch or epoch + 1 >= self.cfg.epochs:
            return self.validate(self.run.test_loader, keep=keep)
        return {"loss": math.nan, "top1_err": math.nan, "top5_err": math.nan}

    @torch.no_grad()
    def validate(self, loader: Any, keep: bool = False) -> dict[str, Any]:
        """One checkpoint, one number: evaluated as `cnnlab eval` and report.html evaluate it (the plain
        module, not the compiled graph, under the autocast `Run.eval_amp`: the training's where it is this
        device's fast type, else fp32). `keep`: keep the probabilities (report.html)."""
        self.raw.eval()
        acc = Accumulator(len(self.run.classes), self.ctx.device, keep_probs=keep)
        amp = self.run.eval_amp  # decided once per evaluation, not per batch
        for x, y in loader.epoch(0):
            # The paper's multi-view test (section 4.1): the softmax averaged over the views.
            acc.update(view_probs(self.raw, x, amp), y)
        self.train_mode()
        return {**acc.result(reduce=True), "precision": precision_words(amp)}

    # -- checkpoints --------------------------------------------------------------------------------------
    def _save(self, best: bool) -> None:
        # Rank 0 writes; a failed write (a full disk) stops every rank with the same message.
        with self.stop.saving_checkpoint():
            distributed.on_main(self.ctx, lambda: self._write(best))

    def _write(self, best: bool) -> None:
        at = checkpoints.Position(self.epoch, self.step, self.partial, self.history, self.best_err)
        checkpoints.write(self.run.folder, checkpoints.layout(self.run, self.raw, self.scaler, at), best)

    def release_collectives(self) -> None:
        """Drop the DistributedDataParallel wrapper (its reducer, which holds the process group and hooks on
        the parameters) while the group is still alive: destroyed after it, at exit, a rank was seen to
        abort ("terminate called without an active exception")."""
        self.train_net = self.net
        gc.collect()

    # -- the end ------------------------------------------------------------------------------------------
    def finish(self, stopped: str | None) -> dict[str, Any]:
        """curves.png, then summary.txt last (only for a complete run); the final numbers."""
        final = records.final_numbers(self.history)
        if not self.ctx.is_main:
            return final
        if self.epoch_log is not None:
            self.epoch_log.close()
        folder = self.run.folder
        curves = None
        if self.history:
            title = f"{self.cfg.model} on {self.cfg.dataset}"
            curves = report.plot_curves(self.history, folder.curves, title, held_out=self.run.held_out)
        if stopped is None and self.history:
            facts = records.summary_facts(self.run)
            self.progress.always(records.write_summary(folder, self.cfg, facts, final))
            self.curves = curves  # report.html embeds this picture (the train command draws the page)
        elif stopped is not None:
            how = "on request (--stop-after)" if stopped == "stop_after" else f"by {stopped}"
            self.progress.always(
                f"stopped {how} in epoch {self.epoch + 1} after step {self.step}; checkpoint saved to "
                f"{folder.last}; continue with: cnnlab train --out {folder.root} --resume"
            )
        return final
