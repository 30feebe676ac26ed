"""A cnnlab checkpoint's digest: a sha256 over a canonical serialisation of the whole checkpoint dict.

torch's zip reader does not check the CRCs its writer stores, so a flipped bit anywhere in a checkpoint
file would load silently: in a tensor (a weight), or in the pickled metadata (an activation `relu` read
as `selu`, a normalisation std, a class name, the config). `checkpoint.save` therefore stores, under
`integrity`, a sha256 of everything else the dict holds, and `checkpoint.load` recomputes it before any
of it is used and refuses a mismatch.

The serialisation is canonical: every value is written with its type, and lengths before contents, so
two different dicts never give the same bytes. Dict entries go in the order of their keys (so the digest
does not depend on insertion order), lists and tuples in theirs. A tensor is its dtype, shape, strides,
storage offset, then the bytes of its storage, in one pass over the bytes the file holds: no per-element
Python work, and a view is never expanded. A tensor announcing more elements than its storage holds (a
stride-0 `expand` of a 4-byte storage to 2^34 elements, say) is refused before anything touches it.

The digest detects corruption, not forgery: whoever can write the file can write a matching digest. The
other checks of `checkpoint.load` (its schema) hold for forged files too. This module sits beside the
models (torch only): `models.pretrained` uses it to check a cnnlab checkpoint given as `--weights`
without importing `checkpoint`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import torch

from cnnlab.errors import CnnlabError

FORMAT = "cnnlab-checkpoint"  # the value of a checkpoint's "format" entry
KEY = "integrity"
ALGORITHM = "sha256-canonical-1"
_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_DEPTH = 32  # a cnnlab checkpoint nests 5 deep (optimizer state); a deeper one is not ours


class Untrustworthy(ValueError):
    """A value the digest will not touch (an oversized view, a nesting too deep)."""


def storage_elements(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes() // max(t.element_size(), 1)


def check_tensor(t: torch.Tensor, where: str) -> None:
    """Refuse a tensor whose shape announces more elements than its storage holds: an expanded or
    overlapping view, which any operation on its values would inflate (64 GiB from a 3 MB file)."""
    if t.numel() > storage_elements(t):
        raise Untrustworthy(
            f"tensor {where} announces {t.numel()} elements of shape {list(t.shape)} but stores only "
            f"{storage_elements(t)} (an expanded view)"
        )


def _bytes(tag: bytes, data: bytes) -> bytes:
    return tag + str(len(data)).encode() + b":" + data


def _key(k: Any) -> bytes:
    if k is None or isinstance(k, (str, int, float)):
        return _bytes(b"k", repr((type(k).__name__, k)).encode("utf-8", "surrogatepass"))
    raise Untrustworthy(f"a dict key of type {type(k).__name__}")


def _feed(h: Any, obj: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise Untrustworthy(f"{where} is nested more than {_MAX_DEPTH} deep")
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, int):
        h.update(_bytes(b"i", str(obj).encode()))
    elif isinstance(obj, float):
        h.update(_bytes(b"f", obj.hex().encode()))
    elif isinstance(obj, str):
        h.update(_bytes(b"s", obj.encode("utf-8", "surrogatepass")))
    elif isinstance(obj, bytes):
        h.update(_bytes(b"b", obj))
    elif isinstance(obj, torch.Tensor):
        _feed_tensor(h, obj, where)
    elif isinstance(obj, dict):
        h.update(_bytes(b"d", str(len(obj)).encode()))
        for kb, k in sorted((_key(k), k) for k in obj):
            h.update(kb)
            _feed(h, obj[k], f"{where}/{k!r}", depth + 1)
    elif isinstance(obj, (list, tuple)):
        h.update(_bytes(b"l" if isinstance(obj, list) else b"t", str(len(obj)).encode()))
        for i, value in enumerate(obj):
            _feed(h, value, f"{where}[{i}]", depth + 1)
    else:  # what weights_only loading allows besides: torch.dtype, torch.device, torch.Size...
        h.update(_bytes(b"o", f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r}".encode()))


def _feed_tensor(h: Any, t: torch.Tensor, where: str) -> None:
    check_tensor(t, where)
    head = f"{t.dtype}|{tuple(t.shape)}|{t.stride()}|{t.storage_offset()}|{t.untyped_storage().nbytes()}"
    h.update(_bytes(b"x", head.encode()))
    storage = t.detach().untyped_storage()
    if storage.device.type != "cpu":
        storage = storage.cpu()
    if storage.nbytes():
        h.update(torch.empty(0, dtype=torch.uint8).set_(storage).numpy().data)


def digest(ckpt: dict[str, Any]) -> dict[str, str]:
    """The `integrity` entry for `ckpt`: a sha256 over everything in it but that entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in ckpt.items() if k != KEY}, "", 0)
    return {"algorithm": ALGORITHM, "digest": h.hexdigest()}


def verify(ckpt: dict[str, Any], where: object) -> None:
    """Refuse `ckpt` (read from `where`) unless its stored digest matches its whole content."""
    stored = ckpt.get(KEY)
    if stored is None:
        raise CnnlabError(
            f"checkpoint {where} has no integrity digest, which every checkpoint cnnlab writes has: it is "
            "damaged, or not written by cnnlab"
        )
    if not isinstance(stored, dict):
        raise CnnlabError(f"checkpoint {where}: its integrity entry is unreadable; it is damaged")
    if stored.get("algorithm") != ALGORITHM:
        raise CnnlabError(
            f"checkpoint {where} was checked with {str(stored.get('algorithm'))[:40]!r}, not {ALGORITHM!r}: "
            "it is damaged, or from another cnnlab version (retrain it with this one)"
        )
    # Exactly the two entries `digest` writes: the entry itself is the one part the digest cannot cover.
    if set(stored) != {"algorithm", "digest"} or not _HEX.fullmatch(str(stored["digest"])):
        raise CnnlabError(f"checkpoint {where}: its integrity entry is unreadable; it is damaged")
    try:
        found = digest(ckpt)["digest"]
    except Untrustworthy as exc:
        raise CnnlabError(f"checkpoint {where}: {exc}; it is damaged or malicious") from None
    if found != stored["digest"]:
        raise CnnlabError(
            f"checkpoint {where} is corrupt: its content (weights or metadata) does not match the digest "
            "stored when it was written; restore it from a copy, or use the run's other checkpoint "
            "(best.pt or last.pt)"
        )


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding NaN or an infinity (sizes checked first)."""
    for name, t in tensors.items():
        check_tensor(t, repr(name))
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return str(name)
    return None
