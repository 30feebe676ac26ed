"""A bare machine (no Graphviz, Chromium or Fashion-MNIST): `make test` names what is missing and says the
tests that need it skip; every such test carries one of conftest's markers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import chromium_installed, fashion_mnist_installed

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_deps_names_what_is_missing_and_says_the_tests_skip() -> None:
    # APT=none: the report only, never an install, whoever runs the suite.
    done = subprocess.run(
        ["make", "-s", "deps", "APT=none"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    missing = [
        name
        for name, present in (
            ("dataset-fashion-mnist", fashion_mnist_installed()),
            ("graphviz", shutil.which("dot") is not None),
            ("chromium", chromium_installed()),
        )
        if not present
    ]
    if not missing:
        assert done.stdout == ""
        return
    assert f"not installed: {' '.join(missing)} " in done.stdout
    assert "the tests that need them will be skipped" in done.stdout


def test_make_test_and_demo_install_what_they_can_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "test-fast", "demo"):
        assert re.search(rf"^{target}:.*\bdeps\b", makefile, re.M), target


def test_every_test_needing_a_program_or_the_real_data_uses_conftests_marker() -> None:
    """A test that reads the installed Fashion-MNIST or runs dot or Chromium skips through conftest's markers,
    so a bare machine skips it with the reason (and `make deps` names the package)."""
    own = {"conftest.py", Path(__file__).name}
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name in own:
            continue
        text = path.read_text()
        assert 'which("dot")' not in text, path.name
        assert "/usr/bin/chromium" not in text, path.name
        assert "/usr/share/datasets" not in text, path.name
