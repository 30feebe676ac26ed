"""Shared test set-up: one thread per xdist worker (two workers on two cores), deterministic seeds."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("CNNLAB_TEST_THREADS", "1")))

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def fashion_mnist_installed() -> bool:
    return os.path.isdir(FASHION_MNIST_DIR)
