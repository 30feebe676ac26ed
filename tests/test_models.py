"""The model zoo: registry, switches, the paper's details (LRN, init, geometry), input checks.

Big nets are built under `torch.device("meta")` where only shapes matter: no memory, no init cost.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import CnnlabError, models
from cnnlab.models import layers as L

PARAMS_AT_1000 = {
    "alexnet": 62_378_344,
    "alexnet_grouped": 60_965_224,
    "alexnet_parallel": 60_965_224,
    "alexnet_torchvision": 61_100_840,
    "alexnet_half": 16_630_440,
    "vgg16": 138_357_544,
}


def meta(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return models.create(name, **kwargs)  # type: ignore[arg-type]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS_AT_1000))
def test_parameter_counts(name: str) -> None:
    assert n_params(meta(name)) == PARAMS_AT_1000[name]


def test_registry_lists_every_family_and_info() -> None:
    names = models.names()
    expected = {
        "alexnet",
        "alexnet_grouped",
        "alexnet_parallel",
        "alexnet_torchvision",
        "alexnet_half",
        "alexnet_small",
        "alexnet_fast",
        *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
        "vgg_small",
        "googlenet",
        "googlenet_torchvision",
        "googlenet_small",
        "lenet5",
        "figure1_net",
    }
    assert set(names) == expected
    info = models.info("alexnet")
    assert (info.name, info.family, info.input_size) == ("alexnet", "alexnet", 227)
    assert "Krizhevsky" in info.paper
    assert models.info("alexnet_small").input_size == 28
    assert models.info("googlenet").switches["dropout"] == 0.4
    assert models.AUX_LOSS_WEIGHT == 0.3


def test_unknown_name_and_switch_list_valid_ones() -> None:
    with pytest.raises(CnnlabError, match="alexnet_small"):
        models.create("lenet")
    with pytest.raises(CnnlabError, match=r"valid switches are .*overlap_pool"):
        models.create("alexnet_small", pooling="max")
    with pytest.raises(CnnlabError):
        models.info("lenet")


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        ({"activation": "foo"}, "relu, tanh, sigmoid"),
        ({"dropout": 1.5}, r"\[0, 1\)"),
        ({"dropout": -0.1}, r"\[0, 1\)"),
        ({"init": "xavier"}, "paper, paper_bias01, kaiming, default"),
        ({"lrn": "maybe"}, "true or false"),
        ({"width": 0}, "positive"),
        ({"width": "wide"}, "number"),
    ],
)
def test_bad_switch_values(switches: dict[str, object], message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        models.create("alexnet_small", num_classes=10, in_channels=1, **switches)


def test_bad_common_arguments_and_input_size() -> None:
    with pytest.raises(CnnlabError, match="num_classes"):
        models.create("alexnet_small", num_classes=0)
    with pytest.raises(CnnlabError, match="224"):
        meta("alexnet", input_size=225)
    with pytest.raises(CnnlabError, match="init"):
        meta("vgg11", init="paper_bias01")


def test_cli_strings_are_coerced() -> None:
    model = models.create("alexnet_small", "10", "1", lrn="false", dropout="0.25", width="0.5")  # type: ignore[arg-type]
    assert not any(isinstance(m, L.LocalResponseNorm) for m in model.modules())
    assert model.classifier.drop4.p == 0.25
    assert model.features.conv1.out_channels == 16
    parallel = meta("alexnet_parallel", devices="cpu,cpu")
    assert parallel.arch == "alexnet_parallel"


def paper_lrn(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Sec. 3.3 written out: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = (a[:, lo : hi + 1] ** 2).sum(dim=1)
        out[:, i] = a[:, i] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize("channels", [12, 96])  # both window-sum paths: band conv and shifted slices
def test_lrn_matches_the_papers_formula(channels: int) -> None:
    # Activations of ~30 make alpha * sum comparable to k, so a wrong alpha convention shows.
    a = torch.randn(2, channels, 3, 3, dtype=torch.float64).float() * 30
    expected = paper_lrn(a.double(), 5, 1e-4, 0.75, 2.0).float()
    ours = L.LocalResponseNorm(channels)(a)
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-5)
    # PyTorch's module divides alpha by n: the paper's constants are alpha=5e-4 there.
    torch_lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a)
    assert torch.allclose(torch_lrn, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a), expected, rtol=1e-3)


def test_lrn_groups_normalise_each_tower_apart_and_keeps_dtype() -> None:
    a = torch.randn(2, 16, 4, 4) * 30
    grouped = L.LocalResponseNorm(16, groups=2)(a)
    halves = [L.LocalResponseNorm(8)(part) for part in a.chunk(2, dim=1)]
    assert torch.allclose(grouped, torch.cat(halves, dim=1))
    assert not torch.allclose(grouped, L.LocalResponseNorm(16)(a))
    assert L.LocalResponseNorm(16)(a.bfloat16()).dtype == torch.bfloat16


def test_lrn_is_channels_last_friendly() -> None:
    a = torch.randn(2, 32, 5, 5) * 30
    norm = L.LocalResponseNorm(32)
    out = norm(a.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, norm(a), atol=1e-6)


def run_forward_backward(model: nn.Module, x: torch.Tensor, classes: int) -> None:
    model.train()
    logits, aux = models.split_outputs(model(x))
    assert logits.shape == (x.shape[0], classes)
    target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    loss = F.cross_entropy(logits, target)
    for head in aux:
        loss = loss + models.AUX_LOSS_WEIGHT * F.cross_entropy(head, target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    if x.device.type != "meta":
        assert torch.isfinite(loss).all()
        assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("activation", sorted(L.ACTIVATIONS))
@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_activation_trains_on_small_nets(activation: str, in_channels: int) -> None:
    model = models.create("alexnet_small", 10, in_channels, activation=activation, width=0.25)
    run_forward_backward(model, torch.randn(3, in_channels, 28, 28), 10)
    assert activation + "1" in dict(model.features.named_children())


@pytest.mark.parametrize(
    "switches",
    [
        {"lrn": False},
        {"overlap_pool": False},
        {"dropout": 0.0},
        {"batch_norm": True},
        {"init": "paper"},
        {"init": "paper_bias01"},
        {"init": "default"},
        {"width": 2.0},
    ],
)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_switch_runs_on_the_small_net(switches: dict[str, object], in_channels: int) -> None:
    model = models.create("alexnet_small", 7, in_channels, **switches)
    run_forward_backward(model, torch.randn(2, in_channels, 32, 32), 7)


@pytest.mark.parametrize("name", models.names())
def test_every_model_runs_forward_and_backward(name: str) -> None:
    """All nets, grey input, a non-default activation, on meta tensors (shapes and autograd graph only)."""
    in_channels = 1
    model = meta(name, num_classes=5, in_channels=in_channels, activation="elu")
    side = max(64, L.smallest_side(model.spatial_layers()))
    run_forward_backward(model, torch.randn(2, in_channels, side, side, device="meta"), 5)
    model.eval()
    assert model.embed(torch.randn(2, in_channels, side, side, device="meta")).dim() == 2


@pytest.mark.parametrize(
    ("name", "switches"),
    [
        ("alexnet", {"lrn": False, "overlap_pool": False, "batch_norm": True, "dropout": 0.1}),
        ("alexnet_grouped", {"batch_norm": True, "activation": "tanh"}),
        ("alexnet_parallel", {"lrn": False, "overlap_pool": False, "activation": "selu"}),
        ("alexnet_half", {"input_size": 227, "batch_norm": True}),
        ("alexnet_torchvision", {"lrn": True, "batch_norm": True, "overlap_pool": False}),
        ("vgg11", {"lrn": True, "dropout": 0.0, "activation": "leaky_relu"}),
        ("googlenet", {"lrn": False, "aux_logits": False, "activation": "sigmoid"}),
        ("googlenet_torchvision", {"transform_input": True}),
    ],
)
def test_big_net_switches_build_and_run(name: str, switches: dict[str, object]) -> None:
    model = meta(name, num_classes=4, **switches)
    run_forward_backward(model, torch.randn(2, 3, 128, 128, device="meta"), 4)


def conv_and_pool_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d))
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize(("input_size", "padding"), [(227, 0), (224, 2)])
def test_paper_geometry_at_227_and_224(input_size: int, padding: int) -> None:
    model = meta("alexnet", input_size=input_size).eval()
    assert model.features.conv1.padding == (padding, padding)
    shapes = conv_and_pool_outputs(model, torch.randn(1, 3, input_size, input_size, device="meta"))
    assert shapes["features.conv1"] == (96, 55, 55)
    assert shapes["features.pool1"] == (96, 27, 27)
    assert shapes["features.conv2"] == (256, 27, 27)
    assert shapes["features.pool2"] == (256, 13, 13)
    assert shapes["features.conv5"] == (256, 13, 13)
    assert shapes["features.pool5"] == (256, 6, 6)
    assert model(torch.randn(2, 3, input_size, input_size, device="meta")).shape == (2, 1000)


def test_googlenet_follows_table_1() -> None:
    model = meta("googlenet").eval()
    widths = {
        "3a": 256,
        "3b": 480,
        "4a": 512,
        "4b": 512,
        "4c": 512,
        "4d": 528,
        "4e": 832,
        "5a": 832,
        "5b": 1024,
    }
    for key, width in widths.items():
        assert getattr(model, f"inception{key}").out_channels == width
    assert model.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, L.LocalResponseNorm) for m in model.modules()) == 2
    shapes = conv_and_pool_outputs(model, torch.randn(1, 3, 224, 224, device="meta"))
    assert shapes["conv1.conv"] == (64, 112, 112)
    assert shapes["maxpool1"] == (64, 56, 56)
    assert shapes["maxpool2"] == (192, 28, 28)
    assert shapes["maxpool3"] == (480, 14, 14)
    assert shapes["maxpool4"] == (832, 7, 7)
    tv = meta("googlenet_torchvision")
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)


def test_googlenet_aux_heads_only_in_training() -> None:
    model = meta("googlenet", num_classes=6)
    x = torch.randn(2, 3, 224, 224, device="meta")
    out = model.train()(x)
    assert isinstance(out, models.AuxOutputs)
    assert len(out.aux) == 2 and all(a.shape == (2, 6) for a in out.aux)
    assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(meta("googlenet", aux_logits=False).train()(x), torch.Tensor)
    logits, aux = models.split_outputs(torch.zeros(2, 6))
    assert aux == () and logits.shape == (2, 6)


def test_embed_and_first_conv() -> None:
    small = models.create("alexnet_small", 10, 1).eval()
    x = torch.randn(3, 1, 28, 28)
    features = small.embed(x)
    assert features.shape == (3, 256)
    assert torch.allclose(small.classifier[-1](features), small(x))
    assert len(meta("alexnet").first_conv()) == 1
    for name in ("alexnet_grouped", "alexnet_parallel"):
        towers = meta(name).first_conv()
        assert [tuple(c.weight.shape) for c in towers] == [(48, 3, 11, 11)] * 2
    assert meta("googlenet").embed(torch.randn(2, 3, 64, 64, device="meta")).shape == (2, 1024)


def test_grouped_first_conv_splits_the_real_filters() -> None:
    model = models.create("alexnet_grouped", 10, 1, init="default")
    a, b = model.first_conv()
    assert torch.equal(torch.cat([a.weight, b.weight]), model.features.conv1.weight)


@pytest.mark.parametrize(("name", "smallest", "where"), [("alexnet", 67, "pool5"), ("vgg16", 32, "pool5")])
def test_too_small_input_names_layer_and_smallest_side(name: str, smallest: int, where: str) -> None:
    model = meta(name).eval()
    with pytest.raises(CnnlabError, match=rf"reaches zero at layer {where}.*at least {smallest}x{smallest}"):
        model(torch.randn(1, 3, smallest - 1, smallest + 10, device="meta"))
    model(torch.randn(1, 3, smallest, smallest, device="meta"))  # the smallest side does work


def test_wrong_channel_count_is_a_user_error() -> None:
    model = models.create("alexnet_small", 10, 1)
    with pytest.raises(CnnlabError, match="in_channels=3"):
        model(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_size_arithmetic_matches_pytorch(ceil_mode: bool) -> None:
    layers = [
        nn.Conv2d(1, 1, 5, stride=3, padding=1),
        nn.Conv2d(1, 1, 3, stride=1, padding=2, dilation=2),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=ceil_mode),
        nn.MaxPool2d(3, 2, ceil_mode=ceil_mode),
        nn.AvgPool2d(2, 2, ceil_mode=ceil_mode),
    ]
    for layer in layers:
        for side in range(1, 24):
            predicted = L.trace_sizes([("x", layer)], side)
            try:
                real = layer(torch.zeros(1, 1, side, side)).shape[-1]
            except RuntimeError:
                real = 0
            assert (predicted[1] is None) == (real > 0), (layer, side)
            if real > 0:
                assert predicted[0] == real, (layer, side)


def test_paper_init() -> None:
    model = models.create("alexnet_half", init="paper")
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    layers = dict(model.features.named_children()) | dict(model.classifier.named_children())
    for name, layer in layers.items():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert layer.weight.mean().abs() < 1e-3
            assert math.isclose(layer.weight.std().item(), 0.01, rel_tol=0.1), name
            assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name
    caffe = models.create("alexnet_small", 10, 1, init="paper_bias01")
    assert torch.all(caffe.features.conv2.bias == 0.1) and torch.all(caffe.features.conv1.bias == 0)
    assert torch.all(caffe.classifier.fc4.bias == 0.1) and torch.all(caffe.classifier.fc6.bias == 0)


def test_kaiming_init_scales_with_fan_in() -> None:
    model = models.create("alexnet_small", 10, 1, init="kaiming", width=2.0)
    conv2 = model.features.conv2
    fan_in = conv2.in_channels * 25
    assert math.isclose(conv2.weight.std().item(), math.sqrt(2 / fan_in), rel_tol=0.1)
    assert torch.all(conv2.bias == 0)
    assert math.isclose(model.classifier.fc6.weight.std().item(), 0.01, rel_tol=0.2)


def test_parallel_devices_are_checked() -> None:
    with pytest.raises(CnnlabError, match="devices"):
        meta("alexnet_parallel", devices=("cpu",))
    with pytest.raises(CnnlabError, match="not valid"):
        meta("alexnet_parallel", devices=("gpu0", "cpu"))
    if torch.cuda.device_count() < 8:
        with pytest.raises(CnnlabError, match="not available"):
            meta("alexnet_parallel", devices=("cpu", "cuda:7"))


@pytest.mark.parametrize("channels", [16, 96])  # the band-matrix path and the shifted-slices path
def test_lrn_follows_float64_inputs(channels: int) -> None:
    a = torch.rand(2, channels, 5, 5, dtype=torch.float64) * 40
    ours = L.LocalResponseNorm(channels)(a)
    assert ours.dtype == torch.float64
    # In double precision it agrees with PyTorch's (alpha / n convention) far below float32's resolution.
    expected = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a)
    assert torch.allclose(ours, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["googlenet", "alexnet_half", "alexnet_small", "alexnet_grouped"])
def test_models_with_lrn_run_in_float64(name: str) -> None:
    model = models.create(name, num_classes=3).double().eval()
    side = models.info(name).input_size
    out = model(torch.rand(1, 3, side, side, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (1, 3)


def _calls_per_leaf(model: nn.Module, size: tuple[int, int, int], training: bool) -> dict[str, int]:
    """How often each leaf module ran in one forward (hooks), in `training` mode."""
    calls: dict[str, int] = {}
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]
    handles = [
        m.register_forward_hook(lambda *_, n=n: calls.__setitem__(n, calls.get(n, 0) + 1)) for n, m in leaves
    ]
    model.train(training)
    with torch.no_grad():
        model(torch.zeros(2, *size, device="meta"))
    for h in handles:
        h.remove()
    return {n: calls.get(n, 0) for n, _ in leaves}


@pytest.mark.parametrize("name", models.names())
def test_every_layer_runs_once_per_forward_as_its_table_says(name: str) -> None:
    """No module applied twice (GoogLeNet's average pool was), none with parameters left out in training;
    and the layer table (`summary`) has one row per module, in the order the forward ran them."""
    from cnnlab import summary

    model = meta(name)
    info = models.info(name)
    size = (info.in_channels, info.input_size, info.input_size)
    for training in (True, False):
        calls = _calls_per_leaf(model, size, training)
        twice = {n: c for n, c in calls.items() if c > 1}
        assert not twice, f"{name} ({'train' if training else 'eval'}): applied more than once: {twice}"
        if training:
            unused = [n for n, m in model.named_modules() if n in calls and calls[n] == 0 and
                      any(True for _ in m.parameters(recurse=False))]  # fmt: skip
            assert not unused, f"{name}: layers with parameters never run in training: {unused}"
    rows = [r.name for r in summary.layer_table(model, size) if r.ran]
    assert len(rows) == len(set(rows)), f"{name}: a layer has two rows: {rows}"
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: order.append(n))
             for n, m in model.named_modules() if n and not any(m.children())]  # fmt: skip
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *size, device="meta"))
    for h in hooks:
        h.remove()
    leaf_rows = [r for r in rows if r in set(order)]
    assert leaf_rows == order, f"{name}: the table's order is not the forward's"


@pytest.mark.parametrize("entry", __import__("cnnlab.catalog").catalog.load(), ids=lambda e: e["name"])
def test_default_build_takes_the_catalogues_input(entry: dict[str, object]) -> None:
    """`models.create(name)` with no arguments builds the net the catalogue (and `cnnlab models`) describe:
    its input channels (LeNet-5: 1x32x32, it was 3), its parameters at 1000 classes, and a forward at its
    default input size."""
    model = meta(str(entry["name"]))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == entry["in_channels"]
    assert n_params(model) == entry["params"]["1000"]  # type: ignore[index]
    side = int(entry["input_size"])  # type: ignore[call-overload]
    model.eval()
    out = model(torch.zeros(1, int(entry["in_channels"]), side, side, device="meta"))  # type: ignore[call-overload]
    assert tuple(out.shape) == (1, 1000)
