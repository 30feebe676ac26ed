"""Shared test set-up: one thread per xdist worker (two workers on two cores), deterministic seeds, and the
markers of the tests that need something a bare machine lacks (they skip, saying what to install)."""

import os
import shutil

import pytest
import torch

torch.set_num_threads(int(os.environ.get("CNNLAB_TEST_THREADS", "1")))

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def fashion_mnist_installed() -> bool:
    return os.path.isdir(FASHION_MNIST_DIR)


def chromium_installed() -> bool:
    return os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


# `make test` installs these where it can (Debian, as root); elsewhere the tests below skip with the reason.
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="graphviz's `dot` is not installed (apt-get install graphviz)"
)
needs_chromium = pytest.mark.skipif(
    not chromium_installed(), reason="Chromium is not installed (apt-get install chromium)"
)
needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_installed(),
    reason=f"Fashion-MNIST is not in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)
