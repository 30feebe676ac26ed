"""AlexNet's two towers as real model parallelism (Sec. 3.2): tower A on one device, tower B on another.

Each tower holds half of every layer. The towers exchange activations only where the paper's Figure 2
connects them: the input of conv3 (both towers' conv2 maps) and the input of every fully connected layer
(fc6, fc7, fc8: "the neurons in the fully-connected layers are connected to all neurons in the previous
layer"). conv1, conv2, conv4 and conv5, and the LRN layers, see only their own tower's maps. fc8's classes
are split between the towers too (A takes the first ceil(n/2)), and the logits are gathered on A's device.

With the same weights this net computes exactly what `alexnet_grouped` computes: grouped conv2/4/5 are
two towers in one tensor. `grouped_to_parallel_state` and `parallel_to_grouped_state` convert weights.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.alexnet import (
    HALF_WIDTHS,
    PAPER,
    SWITCHES,
    AlexNetSwitches,
    conv1_padding_for,
    conv_layers,
    fc_layers,
    paper_table,
)
from cnnlab.models.registry import register

# Which stage of a tower holds each layer: a stage ends where the towers exchange activations.
_STAGE = {
    **dict.fromkeys(("conv1", "bn1", "conv2", "bn2"), "stage1"),
    **dict.fromkeys(("conv3", "bn3", "conv4", "bn4", "conv5", "bn5"), "stage2"),
    "fc6": "stage3",
    "fc7": "stage4",
    "fc8": "",
}


class Tower(nn.Module):
    """One GPU's half of Figure 2: 48-128-192-192-128 maps, 2048-2048 fc units, a share of the classes."""

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        conv1_padding: int,
        switches: AlexNetSwitches,
    ) -> None:
        super().__init__()
        table = paper_table(HALF_WIDTHS, conv1_padding=conv1_padding)
        self.bias_one: list[nn.Module] = []
        self.stage1 = nn.Sequential(conv_layers(table[:2], in_channels, switches, bias_one=self.bias_one))
        # conv3 reads both towers' conv2 maps: 2 x 128 channels.
        self.stage2 = nn.Sequential(
            conv_layers(table[2:], 2 * 128, switches, bias_one=self.bias_one, first=3)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        act, dropout = switches.activation, switches.dropout
        self.stage3 = nn.Sequential(fc_layers(6, 2 * 128 * 6 * 6, 2048, act, dropout))
        self.stage4 = nn.Sequential(fc_layers(7, 2 * 2048, 2048, act, dropout))
        self.fc8 = nn.Linear(2 * 2048, classes)
        self.bias_one += [self.stage3.get_submodule("fc6"), self.stage4.get_submodule("fc7")]

    @property
    def device(self) -> torch.device:
        return self.fc8.weight.device


class AlexNetParallel(L.Net):
    family = "alexnet"

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        devices: tuple[str, str],
        input_size: int,
        switches: AlexNetSwitches,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        switches = switches.checked()
        places = _devices(devices)
        self.default_input_size = input_size
        share_a = (num_classes + 1) // 2
        towers = []
        for classes in (share_a, num_classes - share_a):
            towers.append(
                Tower(
                    in_channels=in_channels,
                    classes=classes,
                    conv1_padding=conv1_padding_for(input_size),
                    switches=switches,
                )
            )
        self.tower_a, self.tower_b = towers
        self.gather = Gather()
        L.init_weights(
            self,
            switches.init,
            activation_name=switches.activation,
            bias_one=self.tower_a.bias_one + self.tower_b.bias_one,
            finals=[self.tower_a.fc8, self.tower_b.fc8],
        )
        for tower, place in ((self.tower_a, places[0]), (self.tower_b, places[1])):
            if tower.device.type != "meta":  # built under torch.device("meta"): shapes only, nothing to move
                tower.to(place)

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        return L.modules_named(self.tower_a.stage1, L.SIZE_CHANGING) + L.modules_named(
            self.tower_a.stage2, L.SIZE_CHANGING
        )

    def _hidden(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both towers' fc7 outputs, each on its own device."""
        self.check_input(x)
        a, b = self.tower_a, self.tower_b
        # Each tower runs on its own device; on GPUs the launches are asynchronous, so they overlap.
        ha = a.stage1(x.to(a.device, non_blocking=True))
        hb = b.stage1(x.to(b.device, non_blocking=True))
        ha, hb = a.stage2(_exchange(ha, hb, a.device)), b.stage2(_exchange(ha, hb, b.device))  # into conv3
        ha = torch.flatten(_pool(a.avgpool, ha), 1)
        hb = torch.flatten(_pool(b.avgpool, hb), 1)
        ha, hb = a.stage3(_exchange(ha, hb, a.device)), b.stage3(_exchange(ha, hb, b.device))  # into fc6
        ha, hb = a.stage4(_exchange(ha, hb, a.device)), b.stage4(_exchange(ha, hb, b.device))  # into fc7
        return ha, hb

    def forward(self, x: Tensor) -> Tensor:
        ha, hb = self._hidden(x)
        a, b = self.tower_a, self.tower_b
        logits_a = a.fc8(_exchange(ha, hb, a.device))  # into fc8
        logits_b = b.fc8(_exchange(ha, hb, b.device))
        return self.gather(logits_a, logits_b)

    def embed(self, x: Tensor) -> Tensor:
        ha, hb = self._hidden(x)
        return _exchange(ha, hb, self.tower_a.device)

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.tower_a.stage1.get_submodule("conv1"), self.tower_b.stage1.get_submodule("conv1"))


class Gather(nn.Module):
    """The logits of both towers' fc8 shares, on tower A's device (a module so layer tables show it)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b.to(a.device, non_blocking=True)], dim=1)


def _exchange(a: Tensor, b: Tensor, device: torch.device) -> Tensor:
    """Both towers' activations, A's channels first, on `device` (the grouped net's channel order)."""
    return torch.cat([a.to(device, non_blocking=True), b.to(device, non_blocking=True)], dim=1)


def _pool(pool: nn.AdaptiveAvgPool2d, x: Tensor) -> Tensor:
    return x if x.shape[-2:] == (6, 6) else pool(x)


def _devices(devices: object) -> tuple[torch.device, torch.device]:
    if not isinstance(devices, (tuple, list)) or len(devices) != 2:
        raise CnnlabError(f"devices={devices!r} is not valid: give two devices, e.g. cuda:0,cuda:1")
    places = []
    for name in devices:
        try:
            place = torch.device(name)
        except (RuntimeError, TypeError):
            raise CnnlabError(f"device {name!r} is not valid: use cpu, cuda:0, cuda:1, ...") from None
        if place.type == "cuda" and (
            not torch.cuda.is_available() or (place.index or 0) >= torch.cuda.device_count()
        ):
            raise CnnlabError(
                f"device {name} is not available ({torch.cuda.device_count()} GPUs here): "
                "use devices=cpu,cpu or the GPUs this machine has"
            )
        places.append(place)
    return places[0], places[1]


def _split_key(key: str) -> tuple[str, str]:
    """'features.conv2.weight' or 'tower_a.stage1.conv2.weight' -> ('conv2', 'weight')."""
    parts = key.split(".")
    return parts[-2], parts[-1]


def grouped_to_parallel_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An `alexnet_grouped` state dict as an `alexnet_parallel` one: every tensor split on its first axis.

    A grouped layer's first half of output units is tower A's (groups=2 puts tower A's filters first).
    """
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, tensor in state.items():
        layer, param = _split_key(key)
        stage = _STAGE[layer]
        prefix = f"{stage}.{layer}" if stage else layer
        if param == "num_batches_tracked":
            halves: tuple[Tensor, ...] = (tensor.clone(), tensor.clone())
        else:
            first = (tensor.shape[0] + 1) // 2
            halves = (tensor[:first].clone(), tensor[first:].clone())
        out[f"tower_a.{prefix}.{param}"] = halves[0]
        out[f"tower_b.{prefix}.{param}"] = halves[1]
    return out


def parallel_to_grouped_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An `alexnet_parallel` state dict as an `alexnet_grouped` one (tower A's units first), on the CPU."""
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, tensor in state.items():
        if not key.startswith("tower_a."):
            continue
        layer, param = _split_key(key)
        other = state["tower_b." + key[len("tower_a.") :]]
        container = "features" if layer.startswith(("conv", "bn")) else "classifier"
        joined = tensor.cpu() if param == "num_batches_tracked" else torch.cat([tensor.cpu(), other.cpu()])
        out[f"{container}.{layer}.{param}"] = joined
    return out


@register(
    family="alexnet",
    input_size=227,
    paper=PAPER,
    description="the two towers as model parallelism, one device each (Sec. 3.2)",
)
def alexnet_parallel(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    devices: tuple[str, str] = ("cpu", "cpu"),
    switches: AlexNetSwitches = SWITCHES,
    input_size: int = 227,
) -> AlexNetParallel:
    return AlexNetParallel(
        num_classes=num_classes,
        in_channels=in_channels,
        devices=devices,
        input_size=input_size,
        switches=switches,
    )
