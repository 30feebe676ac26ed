"""The PEP 517 build backend: setuptools', building in a temporary folder.

setuptools builds in the source tree (`build/`, `cnnlab.egg-info/`) and never cleans up
(pypa/setuptools#3236), so `pip install .` would leave both in a checkout. Its distutils layer reads one
more configuration file, named by DIST_EXTRA_CONFIG; we point that at a file giving a temporary
`build_base` and `egg_base`, removed after each build. Everything else is setuptools' own backend.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from setuptools import build_meta


@contextlib.contextmanager
def _outside_the_tree() -> Iterator[None]:
    before = os.environ.get("DIST_EXTRA_CONFIG")
    with tempfile.TemporaryDirectory(prefix="cnnlab-build-") as tmp:
        cfg = os.path.join(tmp, "setup.cfg")
        with open(cfg, "w") as f:
            f.write(f"[build]\nbuild_base = {tmp}/build\n[egg_info]\negg_base = {tmp}\n")
        os.environ["DIST_EXTRA_CONFIG"] = cfg
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("DIST_EXTRA_CONFIG", None)
            else:
                os.environ["DIST_EXTRA_CONFIG"] = before


def _wrap(hook: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        with _outside_the_tree():
            return hook(*args, **kwargs)

    run.__name__ = hook.__name__
    return run


get_requires_for_build_wheel = _wrap(build_meta.get_requires_for_build_wheel)
get_requires_for_build_sdist = _wrap(build_meta.get_requires_for_build_sdist)
get_requires_for_build_editable = _wrap(build_meta.get_requires_for_build_editable)
prepare_metadata_for_build_wheel = _wrap(build_meta.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _wrap(build_meta.prepare_metadata_for_build_editable)
build_wheel = _wrap(build_meta.build_wheel)
build_sdist = _wrap(build_meta.build_sdist)
build_editable = _wrap(build_meta.build_editable)
