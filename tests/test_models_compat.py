"""State-dict compatibility with torchvision, and the two-device AlexNet against the grouped one.

VGG weights are generated once (the 25088x4096 classifier is shared by every configuration) and
assigned to meta-built models on both sides, so eight VGGs cost seconds, not minutes.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from cnnlab import models
from cnnlab.models.alexnet_parallel import grouped_to_parallel_state, parallel_to_grouped_state

TOLERANCE = 1e-5


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_alexnet_torchvision_loads_and_matches() -> None:
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = models.create("alexnet_torchvision").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert max_diff(ours(x), reference(x)) <= TOLERANCE


def random_state(
    template: dict[str, torch.Tensor], shared: dict[tuple[int, ...], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Well-scaled random tensors for every key of a meta state dict (activations stay O(1))."""
    state = {}
    for key, meta_tensor in template.items():
        shape = tuple(meta_tensor.shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape) + 0.5
        elif key.endswith(("running_mean", "bias")):
            state[key] = torch.randn(shape) * 0.1
        elif meta_tensor.dim() == 1:  # batch-norm scale
            state[key] = torch.rand(shape) + 0.5
        elif shape in shared:
            state[key] = shared[shape]
        else:
            state[key] = torch.randn(shape) * math.sqrt(2.0 / math.prod(shape[1:]))
    return state


@pytest.fixture(scope="module")
def classifier_weights() -> dict[tuple[int, ...], torch.Tensor]:
    shapes = [(4096, 512 * 7 * 7), (4096, 4096), (1000, 4096)]
    return {shape: torch.randn(shape) * math.sqrt(2.0 / shape[1]) for shape in shapes}


@pytest.mark.parametrize("name", [f"vgg{d}{bn}" for bn in ("", "_bn") for d in (11, 13, 16, 19)])
def test_vgg_loads_torchvision_state_and_matches(
    name: str, classifier_weights: dict[tuple[int, ...], torch.Tensor]
) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
        ours = models.create(name)
    state = random_state(reference.state_dict(), classifier_weights)
    reference.load_state_dict(state, strict=True, assign=True)
    ours.load_state_dict(state, strict=True, assign=True)
    x = torch.randn(2, 3, 32, 32)  # the smallest input; adaptive pooling makes the 7x7 map
    with torch.no_grad():
        expected = reference.eval()(x)
        assert expected.abs().max() > 1e-3  # the comparison is not between two zero tensors
        assert max_diff(ours.eval()(x), expected) <= TOLERANCE


@pytest.mark.parametrize("transform_input", [False, True])
def test_googlenet_torchvision_loads_and_matches(transform_input: bool) -> None:
    reference = torchvision.models.googlenet(
        weights=None, aux_logits=True, init_weights=False, transform_input=transform_input
    )
    ours = models.create("googlenet_torchvision", transform_input=transform_input)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert max_diff(ours.eval()(x), reference.eval()(x)) <= TOLERANCE
        # Training mode: the same dropout draws in the same order give the same main and aux logits.
        torch.manual_seed(1)
        out = ours.train()(x)
        torch.manual_seed(1)
        ref = reference.train()(x)
    assert isinstance(out, models.AuxOutputs)
    assert max_diff(out.logits, ref.logits) <= TOLERANCE
    assert max_diff(out.aux[0], ref.aux_logits1) <= TOLERANCE
    assert max_diff(out.aux[1], ref.aux_logits2) <= TOLERANCE


@pytest.mark.parametrize("batch_norm", [False, True])
def test_parallel_equals_grouped(batch_norm: bool) -> None:
    grouped = models.create("alexnet_grouped", 11, 1, batch_norm=batch_norm, init="default")
    if batch_norm:  # non-trivial running statistics, so eval mode really uses them
        for module in grouped.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.running_var, 0.5, 1.5)
                nn.init.normal_(module.running_mean, 0.0, 0.1)
    parallel = models.create("alexnet_parallel", 11, 1, batch_norm=batch_norm, init="default")
    parallel.load_state_dict(grouped_to_parallel_state(grouped.state_dict()), strict=True)
    x = torch.randn(2, 1, 99, 99) * 5
    with torch.no_grad():
        expected = grouped.eval()(x)
        assert max_diff(parallel.eval()(x), expected) <= TOLERANCE * expected.abs().max().item()
        assert max_diff(parallel.embed(x), grouped.embed(x)) <= TOLERANCE * 10
    # fc8's 11 classes split 6 + 5; the round trip gives the grouped state back exactly.
    assert parallel.tower_a.fc8.out_features == 6 and parallel.tower_b.fc8.out_features == 5
    back = parallel_to_grouped_state(parallel.state_dict())
    assert back.keys() == grouped.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in grouped.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_parallel_across_cpu_and_gpu() -> None:
    grouped = models.create("alexnet_grouped", 10, init="default").eval()
    parallel = models.create("alexnet_parallel", 10, devices=("cuda:0", "cpu"), init="default").eval()
    parallel.load_state_dict(grouped_to_parallel_state(grouped.state_dict()))
    assert parallel.tower_a.fc8.weight.device.type == "cuda"
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        out = parallel(x)
        assert out.device.type == "cuda"
        assert max_diff(out.cpu(), grouped(x)) <= 1e-3  # GPU convolutions use other algorithms
