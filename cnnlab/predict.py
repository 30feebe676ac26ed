"""Class probabilities for image files, preprocessed exactly as the checkpoint's run preprocessed its test
images (the run's own statistics and input size, stored in the checkpoint)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cnnlab import argtypes, checkpoint, distributed
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import view_probs


def predict(
    ckpt_path: str, images: Sequence[str], top: int = 5, device: str = "auto", batch_size: int = 64
) -> list[dict[str, Any]]:
    """For each image: {"path", "top": [{"class", "index", "prob"}, ...]} with the `top` most probable."""
    from cnnlab import data

    if top < 1:
        raise CnnlabError(f"--top must be at least 1, got {top}")
    ckpt = checkpoint.load(ckpt_path)
    dev = distributed.resolve_device(device)
    model = checkpoint.build_model(ckpt).to(dev)
    stats = data.DataStats.from_dict(ckpt["data_stats"])
    aug = data.AugmentConfig.from_dict(ckpt["augment"])
    classes = list(ckpt["classes"])
    k = min(top, len(classes))
    out: list[dict[str, Any]] = []
    for i in range(0, len(images), batch_size):
        chunk = list(images[i : i + batch_size])
        x = data.preprocess_files(chunk, aug, stats).to(dev)
        probs = view_probs(model, x[None])
        p, idx = probs.topk(k, dim=1)
        for path, pr, ix in zip(chunk, p.tolist(), idx.tolist(), strict=True):
            out.append(
                {
                    "path": path,
                    "top": [
                        {"class": classes[j], "index": j, "prob": q} for q, j in zip(pr, ix, strict=True)
                    ],
                }
            )
    return out


def _cmd_predict(args: Any) -> int:
    results = predict(args.checkpoint, args.images, top=args.top, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        best = r["top"][0]
        print(f"{r['path']}: {best['class']} ({100 * best['prob']:.1f}%)")
        for t in r["top"][1:]:
            print(f"    {t['class']:<24} {100 * t['prob']:5.1f}%")
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify image files with a trained checkpoint",
        description="Print the most probable classes of image files, preprocessed as "
        "the checkpoint's run preprocessed its test images.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (RUN/checkpoints/best.pt)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (png, jpg, ...)")
    p.add_argument("--top", type=argtypes.positive, default=5, help="how many classes to show (default 5)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=_cmd_predict)
