"""`cnnlab report RUN_DIR`: one self-contained HTML page that shows a whole run.

The page holds the run's settings, its curves, its final and best numbers (and which split of which data
set they were measured on), then a fresh evaluation of its checkpoint on the same validation images: the
confusion matrix and per-class table, the most confident mistakes, the first-layer kernels, nearest
neighbours in feature space and Grad-CAM maps of a few validation images. Every picture is a PNG inside the
page (base64 data URIs), the style sheet is inline and there is no script: the file opens anywhere, offline,
and can be mailed or archived alone.

`write_report(run_dir, out)` is what `cnnlab train` calls at the end of a run. The evaluation costs one more
pass over the validation set (what one epoch's validation costs), the neighbours one pass over at most
`bank_size` training images.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab import data, outfiles, report
from cnnlab.errors import CnnlabError
from cnnlab.pictures import common, gradcam, paper
from cnnlab.pictures import mistakes as mistakes_mod
from cnnlab.texttable import pct

CHECKPOINTS = ("best", "last")

STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1.2em 1.6em 3em; color: #1c1c1c; background: #fff; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d4d4d4; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; border: 1px solid #e2e2e2; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em; margin: 0.8em 0; }
.missing { color: #8a5a00; font-style: italic; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 1em; }
"""


@dataclass
class Page:
    """The page being built: sections of HTML, in order."""

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, heading, body)

    def add(self, anchor: str, heading: str, body: str) -> None:
        self.sections.append((anchor, heading, body))

    def html(self, subtitle: str) -> str:
        nav = " ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in self.sections)
        body = "\n".join(
            f'<section id="{a}">\n<h2>{html.escape(h)}</h2>\n{b}\n</section>' for a, h, b in self.sections
        )
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f'<h1>{html.escape(self.title)}</h1>\n<p class="sub">{subtitle}</p>\n<nav>{nav}</nav>\n'
            f"{body}\n</body>\n</html>\n"
        )


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{html.escape(str(v))}</td>'
            if i in numeric
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(lines) + "\n</table>"


def missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


# ---------------------------------------------------------------------------------------------------------
# What the run folder says


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """config.json and the metrics.csv rows (as numbers) of a run folder."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise CnnlabError(
            f"{run_dir} is not a run folder (no config.json); give the --out of a `cnnlab train`"
        )
    try:
        doc = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise CnnlabError(f"cannot read {cfg_path} ({exc}); is the run folder damaged?") from None
    history: list[dict[str, float]] = []
    if (run_dir / "metrics.csv").is_file():
        for row in report.read_metrics(run_dir / "metrics.csv"):
            try:
                history.append({k: float(v) for k, v in row.items()})
            except (TypeError, ValueError):
                continue  # a torn or foreign row: the rest still tells the story
    return doc, history


def split_note(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(short label of the test set, sentence) saying which images the "val" and "test" numbers come from,
    from config.json (runs written before test_* columns existed validated on the test set)."""
    cfg = doc.get("config", {})
    data_doc = doc.get("data", {})
    rec = data_doc.get("test") or data_doc.get("val") or {}
    name = rec.get("name") or cfg.get("dataset", "?")
    count = rec.get("count")
    size = f"{count:,} images" if isinstance(count, int) else "size not recorded"
    label = f"{name} test split"
    validation = data_doc.get("validation")
    if isinstance(validation, str) and cfg.get("val_split"):
        sentence = f'"val" numbers: {validation}. "test" numbers: the {label} ({size}).'
    elif isinstance(validation, str):
        sentence = f'"test" numbers: the {label} ({size}), which also served as validation set: {validation}.'
    else:
        sentence = (
            f'The run\'s "val" numbers are measured on the {label} ({size}). This run held nothing out of '
            "its training set, so the test set served as the validation set: the best epoch was chosen on "
            'it, and its "best" number is optimistic.'
        )
    return label, sentence


def run_held_out(doc: Mapping[str, Any], history: Sequence[Mapping[str, float]]) -> bool:
    """Whether the run validated on images held out of its training set (--val-split)."""
    return (
        bool(history)
        and "val_top1_err" in history[0]
        and "test_top1_err" in history[0]
        and bool(doc.get("config", {}).get("val_split"))
    )


def numbers_section(doc: Mapping[str, Any], history: Sequence[Mapping[str, float]]) -> str:
    label, sentence = split_note(doc)
    if not history:
        return missing("No epoch has finished yet (metrics.csv has no rows).")
    last = history[-1]
    batches = "training batches (augmented)"
    held_out = run_held_out(doc, history)
    # Without a held-out split the validation set is the test set: its numbers are shown once, as test
    # (runs from before the test_* columns have only val_*, which then is the test set).
    tested = "test" if "test_top1_err" in last else "val"
    best = min(history, key=lambda r: r["val_top1_err" if held_out else f"{tested}_top1_err"])
    rows = [
        ["test top-1 error", pct(last[f"{tested}_top1_err"]), pct(best[f"{tested}_top1_err"]), label],
        ["test top-5 error", pct(last[f"{tested}_top5_err"]), pct(best[f"{tested}_top5_err"]), label],
        ["test accuracy", pct(1 - last[f"{tested}_top1_err"]), pct(1 - best[f"{tested}_top1_err"]), label],
    ]  # fmt: skip
    if held_out:
        val_label = "held-out part of the training set"
        rows += [
            ["val top-1 error", pct(last["val_top1_err"]), pct(best["val_top1_err"]), val_label],
            ["val top-5 error", pct(last["val_top5_err"]), pct(best["val_top5_err"]), val_label],
            ["val accuracy", pct(1 - last["val_top1_err"]), pct(1 - best["val_top1_err"]), val_label],
            ["val loss", f"{last['val_loss']:.4f}", f"{best['val_loss']:.4f}", val_label],
        ]  # fmt: skip
    else:
        rows += [["test loss", f"{last[f'{tested}_loss']:.4f}", f"{best[f'{tested}_loss']:.4f}", label]]
    rows += [
        ["train loss", f"{last['train_loss']:.4f}", f"{best['train_loss']:.4f}", batches],
        ["train top-1 error", pct(last["train_top1_err"]), pct(best["train_top1_err"]), batches],
    ]  # fmt: skip
    epochs = doc.get("config", {}).get("epochs")
    head = ["", f"final (epoch {int(last['epoch'])}" + (f" of {epochs})" if epochs else ")"),
            f"best val top-1 (epoch {int(best['epoch'])})", "measured on"]  # fmt: skip
    if not held_out:  # nothing was chosen on the test set (best.pt is the last epoch): no "best" column
        head, rows = (
            [c for i, c in enumerate(head) if i != 2],
            [[c for i, c in enumerate(r) if i != 2] for r in rows],
        )
    seconds = sum(r.get("epoch_seconds", 0.0) for r in history)
    return (
        f'<p class="note">{html.escape(sentence)}</p>\n'
        + table(head, rows, numeric=(1, 2) if held_out else (1,))
        + f"<p>{len(history)} epoch{'s' if len(history) != 1 else ''}, {seconds:.1f} s of training.</p>"
    )


def config_section(doc: Mapping[str, Any]) -> str:
    cfg = doc.get("config", {})
    model = doc.get("model", {})
    rows = [["model", f"{model.get('name', cfg.get('model'))} ({model.get('parameters', '?'):,} parameters)"
             if isinstance(model.get("parameters"), int) else str(cfg.get("model"))]]  # fmt: skip
    rows += [
        [k, json.dumps(v) if not isinstance(v, str) else v]
        for k, v in cfg.items()
        if v is not None and k != "model"
    ]
    full = html.escape(json.dumps(doc, indent=2, default=str))
    # Folded: the page opens with the results and pictures, not a long list of resolved settings.
    return (
        f"<details><summary>the {len(rows)} resolved settings</summary>\n"
        + table(["setting", "value"], rows)
        + f"</details>\n<details><summary>config.json</summary><pre>{full}</pre></details>"
    )


def kernel_caption(model: Any) -> str:
    """What a run's first-layer kernels can and cannot show: the paper's Figure 3 is 96 kernels of 11x11
    on colour images; a small net's few-pixel kernels on grey images show much less."""
    convs = model.first_conv()
    conv = convs[0]
    kh, kw = conv.kernel_size
    grey = conv.in_channels == 1
    if kh >= 7 and not grey:
        return (
            f"Each {kh}x{kw} RGB kernel is drawn as a small colour image (the paper's Figure 3): oriented "
            "edges, frequency and colour blobs appear once the net has trained long enough."
        )
    what = f"{kh}x{kw} kernels on {'grey' if grey else 'colour'} images"
    return (
        f"What these can show: {what} are a few pixels each, so at best a light/dark polarity and a rough "
        "orientation (an edge or spot detector). What they cannot show: the Gabor-like and colour-opponent "
        "kernels of the paper's Figure 3, which are 11x11 on colour images; after a short run most small "
        "kernels look like noise, which says little about how well the net works (see the numbers above)."
    )


# ---------------------------------------------------------------------------------------------------------
# What the checkpoint does


def per_class_rows(result: Mapping[str, Any], classes: Sequence[str]) -> list[list[str]]:
    """class, images, accuracy, the class it is most often mistaken for (and how often)."""
    rows = []
    for i, (name, row) in enumerate(zip(classes, result["confusion"], strict=True)):
        n = sum(row)
        acc = row[i] / n if n else float("nan")
        others = [(c, j) for j, c in enumerate(row) if j != i]
        count, j = max(others, default=(0, i))
        confused = f"{classes[j]} ({count}, {pct(count / n) if n else 'n/a'})" if count else "-"
        rows.append([name, str(n), pct(acc), confused])
    return rows


def _pick_per_class(labels: torch.Tensor, count: int) -> list[int]:
    """The first image of each class, classes in order, up to `count` images (then any to fill up)."""
    chosen: list[int] = []
    for c in labels.unique().tolist():
        if len(chosen) == count:
            break
        chosen.append(int((labels == c).nonzero()[0, 0]))
    rest = [i for i in range(len(labels)) if i not in set(chosen)]
    return sorted(chosen + rest[: count - len(chosen)])


def model_sections(
    page: Page,
    run_dir: Path,
    doc: Mapping[str, Any],
    *,
    which: str,
    device: str,
    mistakes: int,
    queries: int,
    bank_size: int | None,
    gradcams: int,
    say: Callable[[str], None],
    measured: tuple[int, Mapping[str, Any]] | None = None,
    data_dir: str | None = None,
    skip_bad_images: bool = False,
) -> None:
    """The sections that need the checkpoint (and the data for all but the kernels: the run's data set,
    from `data_dir` when given, else where the run read it). `measured`: (epoch, result) of an evaluation
    the run already made of that epoch's net on these images (with probabilities), used instead of
    evaluating again."""
    path = _checkpoint_file(run_dir, which)
    if path is None:
        page.add("model", "The trained network", missing("No checkpoint in checkpoints/: nothing to show."))
        return
    subject = common.load_subject(path, device)
    epoch = subject.ckpt.get("epoch", "?")
    where = f"checkpoints/{path.name} (epoch {epoch})"
    _filters_section(page, subject, where)
    cfg = doc.get("config", {})
    label, _ = split_note(doc)
    data_at = data_dir or cfg.get("data_dir") or None
    skip = skip_bad_images or bool(cfg.get("skip_bad_images"))
    try:
        # The official test set, as the run measured it (--limit-val: its first N images).
        val_ds = data.load(cfg["dataset"], "test", data_at, skip_bad_images=skip)
        val_ds = data.limit(val_ds, cfg.get("limit_val"), 0, shuffle=False)
    except (CnnlabError, KeyError) as exc:
        page.add("evaluation", "Evaluation", missing(f"The validation data could not be loaded ({exc})."))
        return
    views = str(cfg.get("val_views") or "center")
    if measured is not None and measured[0] == epoch and measured[1]["count"] == len(val_ds):
        result, how = dict(measured[1]), "as the run evaluated it after that epoch,"
    else:
        say(f"report: evaluating {path.name} on {len(val_ds)} {label} images")
        result, how = mistakes_mod.evaluate_on(subject, val_ds, views), "evaluated again"
    _confusion_section(page, f"{where} {how}", views, result, subject.classes, label)
    if mistakes > 0:
        _mistakes_section(page, subject, val_ds, result, mistakes, label)
    if queries > 0:
        try:
            train_ds = data.load(cfg["dataset"], "train", data_at, skip_bad_images=skip)
        except CnnlabError as exc:
            page.add(
                "neighbors", "Nearest neighbours", missing(f"The training data could not be loaded ({exc}).")
            )
        else:
            _neighbors_section(page, subject, train_ds, val_ds, queries, bank_size, label, say)
    if gradcams > 0:
        _gradcam_section(page, subject, val_ds, result, gradcams)


def _filters_section(page: Page, subject: common.Subject, where: str) -> None:
    page.add("filters", "First-layer kernels",
             f"<p>{html.escape(where)}: conv1's kernels, the AlexNet paper's Figure 3. "
             f"{html.escape(kernel_caption(subject.model))}</p>"
             + img(report.figure_png(paper.filters_figure(subject.model), common.PIXEL_DPI, tight=False),
                   "first-layer kernels"))  # fmt: skip


def _confusion_section(
    page: Page, what: str, views: str, result: Mapping[str, Any], classes: list[str], label: str
) -> None:
    """The numbers of `what` (the checkpoint, and how it was evaluated), its confusion matrix and table."""
    intro = (
        f"<p>{html.escape(what)} on the {html.escape(label)} ({result['count']:,} images, "
        f"{html.escape(views)} view{'s' if views != 'center' else ''}, {result['precision']}): top-1 error "
        f"{pct(result['top1_err'])}, top-5 error {pct(result['top5_err'])}, loss {result['loss']:.4f}.</p>"
    )
    conf = report.confusion_png(result["confusion"], classes, f"{label}: true class down, predicted across")
    page.add("confusion", "Confusion matrix and per-class accuracy",
             intro + img(conf, "confusion matrix")
             + table(["class", "images", "accuracy", "most often mistaken for"],
                     per_class_rows(result, classes), numeric=(1, 2)))  # fmt: skip


def _mistakes_section(
    page: Page, subject: common.Subject, val_ds: Any, result: dict[str, Any], count: int, label: str
) -> None:
    fig, found = mistakes_mod.mistakes_figure(subject, val_ds, result, count, label)
    page.add("mistakes", "Most confident mistakes",
             f"<p>The {len(found)} wrong predictions the net was surest of: what it said, with its "
             "probability, and the true class, with the probability it gave that.</p>"
             + img(report.figure_png(fig), "most confident mistakes"))  # fmt: skip


def _checkpoint_file(run_dir: Path, which: str) -> Path | None:
    """checkpoints/WHICH.pt, or the other one when it is missing; None when neither is there."""
    path = run_dir / "checkpoints" / f"{which}.pt"
    if path.is_file():
        return path
    other = run_dir / "checkpoints" / ("last.pt" if which == "best" else "best.pt")
    return other if other.is_file() else None


def _neighbors_section(
    page: Page, subject: common.Subject, train_ds: Any, val_ds: Any, queries: int, bank_size: int | None,
    label: str,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    bank = min(bank_size or len(train_ds), len(train_ds))
    say(f"report: nearest neighbours among {bank} training images")
    found_nn = paper.find_neighbors(
        subject.model, train_ds, val_ds, subject.aug, subject.stats, queries=queries, k=6,
        bank_size=bank, device=subject.device, amp=subject.amp,
    )  # fmt: skip
    side = paper.picture_side(val_ds, subject.aug)
    title = f"{label} images (framed) and their nearest training images, nearest first"
    fig = paper.neighbors_figure(train_ds, val_ds, found_nn, side, title)
    page.add("neighbors", "Nearest neighbours in feature space",
             f"<p>Euclidean distance between last-hidden-layer feature vectors (the AlexNet paper's "
             f"Figure 4), searched among {bank:,} of the {len(train_ds):,} training images.</p>"
             + img(report.figure_png(fig), "nearest neighbours"))  # fmt: skip


def _gradcam_section(
    page: Page, subject: common.Subject, val_ds: Any, result: Mapping[str, Any], gradcams: int
) -> None:
    classes = subject.classes
    picked = _pick_per_class(result["labels"], min(gradcams, len(val_ds)))
    raw = torch.stack([paper.raw_image(val_ds, i, subject.base_side()) for i in picked])
    x, pictures = subject.from_uint8(raw)
    cam = gradcam.gradcam(subject.model, x)
    labels = [
        f"true {classes[int(result['labels'][i])]}\nsaid {classes[p]} {common.percent(q)}"
        for i, p, q in zip(picked, cam.predicted, cam.probs, strict=True)
    ]
    fig = gradcam.grid_figure(pictures, cam.heat(x.shape[-1]).numpy(), labels,
                              f"Grad-CAM at {cam.layer} for the predicted class")  # fmt: skip
    page.add("gradcam", "Where the net looks (Grad-CAM)",
             f"<p>Grad-CAM (Selvaraju et al. 2017) at {html.escape(cam.layer)}, the last convolutional "
             "stage, for the class the net predicts, on the first validation image of each class.</p>"
             + img(report.figure_png(fig), "Grad-CAM maps"))  # fmt: skip


def _page_output(run_dir: Path, out: str | Path | None, force: bool) -> tuple[Path, outfiles.Outputs]:
    """The page's path, checked by the output rule (the run's own report.html is cnnlab's to rewrite)."""
    own = out is None
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise CnnlabError(f"cannot write {out.name}: the report is an HTML page, name the file *.html")
    run_files = [run_dir / n for n in ("config.json", "metrics.csv", "summary.txt", "checkpoints/best.pt",
                                       "checkpoints/last.pt")]  # fmt: skip
    outputs = outfiles.Outputs("-o", force or own, run_files)
    outputs.check(out)
    return out, outputs


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    mistakes: int = 24,
    queries: int = 6,
    bank_size: int | None = 10_000,
    gradcams: int = 8,
    say: Callable[[str], None] | None = None,
    measured: tuple[int, Mapping[str, Any]] | None = None,
    curves: bytes | None = None,
    force: bool = False,
    data_dir: str | None = None,
    skip_bad_images: bool = False,
) -> Path:
    """Write RUN_DIR/report.html (or `out`): the run as one self-contained HTML page. Returns its path.

    checkpoint: which of checkpoints/best.pt and last.pt to look inside (the other if it is missing).
    mistakes, queries, gradcams: how many mistakes, neighbour rows and Grad-CAM images (0 leaves one out);
    bank_size: how many training images the neighbour search scans (None: all).
    measured: (epoch, result with probabilities) of the run's own last evaluation on the test images, which
    the trainer passes so the page does not evaluate that checkpoint a second time; curves: the curves.png
    it just drew, embedded as it is.

    The run's own RUN_DIR/report.html is cnnlab's to rewrite; another `out` follows the rule of every
    command that writes (`outfiles.check_output`): an existing file only with `force`, never one of the
    run's files.
    """
    run_dir = Path(run_dir)
    out, outputs = _page_output(run_dir, out, force)
    if checkpoint not in CHECKPOINTS:
        raise CnnlabError(f"--checkpoint {checkpoint!r}: use best or last")
    say = say or (lambda _text: None)
    doc, history = read_run(run_dir)
    cfg = doc.get("config", {})
    model_name = doc.get("model", {}).get("name") or cfg.get("model", "?")
    page = Page(f"{model_name} on {cfg.get('dataset', '?')}")
    page.add("numbers", "Results", numbers_section(doc, history))
    if history:
        curves = curves or report.curves_png(
            history, f"{model_name} on {cfg.get('dataset', '?')}", held_out=run_held_out(doc, history)
        )
        page.add("curves", "Training curves", img(curves, "training curves"))
    model_sections(
        page, run_dir, doc, which=checkpoint, device=device, mistakes=mistakes, queries=queries,
        bank_size=bank_size, gradcams=gradcams, say=say, measured=measured, data_dir=data_dir,
        skip_bad_images=skip_bad_images,
    )  # fmt: skip
    page.add("config", "Settings", config_section(doc))  # after the pictures, folded
    complete = (run_dir / "summary.txt").is_file()
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = html.escape(
        f"run folder {run_dir.resolve()} · {'complete' if complete else 'not finished (no summary.txt)'} · "
        f"page written {when} by cnnlab report"
    )
    outputs.write({out: page.html(subtitle).encode()})
    return out
