"""Uniformly width-scaled VGG-11 and ResNet-50 (the ``scaling`` model set of :mod:`host.models.zoo`).

torchvision's MobileNetV2 has ``width_mult``; VGG-11 and ResNet-50 do not, so they are built here.
Width scaling multiplies **every** channel count by the same factor ``w``:

* VGG-11 (torchvision configuration "A", no batch norm): each conv's output channels
  ``64, 128, 256, 256, 512, 512, 512, 512`` become ``scaled(c, w)``; the two hidden fully connected
  layers (4096 units) become ``scaled(4096, w)`` as well, so the whole network is scaled
  uniformly. The adaptive average pool outputs ``p x p`` with ``p = min(7, input_size // 32)``: 7 at
  224 (torchvision's), 1 at CIFAR's 32 — there the five max pools leave a 1x1 map, which torchvision's
  7x7 pool would only copy 49 times (and ONNX cannot export a 1x1 -> 7x7 adaptive pool). The
  classifier reads ``scaled(512, w) * p * p`` features.
* ResNet-50 (torchvision ``Bottleneck``, layers 3-4-6-3): the stem's 64 channels and each stage's
  bottleneck width ``64, 128, 256, 512`` become ``scaled(c, w)``; a block's output is 4x its
  bottleneck width (expansion 4), the final linear layer reads ``4 * scaled(512, w)`` features.

``scaled(c, w) = max(1, round(c * w))`` (Python's round). For the set's widths 0.25/0.5/0.75/1.0
every base count is a multiple of 64, so each product is an exact integer and no rounding happens.
At ``w = 1`` (and 224x224 for VGG) both builders give exactly torchvision's ``vgg11`` / ``resnet50``
(same layers, same parameter count, same initialisation scheme). No weights are ever downloaded:
random init only.

The channel plans and exact parameter counts are plain arithmetic (:func:`vgg11_plan`,
:func:`resnet50_plan`, :func:`vgg11_param_count`, :func:`resnet50_param_count`) and need no
torch; :func:`build_scaled` needs torch and torchvision (imported lazily).
"""

from __future__ import annotations

#: torchvision VGG configuration "A" (VGG-11): conv output channels, "M" = 2x2 max pool.
VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
#: Hidden units of VGG's two fully connected layers.
VGG_HIDDEN = 4096
#: ResNet-50: blocks per stage and each stage's bottleneck width; stem channels; expansion.
RESNET50_LAYERS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)
RESNET_STEM = 64
BOTTLENECK_EXPANSION = 4
#: Architectures :func:`build_scaled` knows.
SCALED_ARCHS = ("vgg11", "resnet50")


def scaled(channels: int, width: float) -> int:
    """``max(1, round(channels * width))``: one channel count at width multiplier ``width``.

    Raises ValueError for a width <= 0."""
    if width <= 0:
        raise ValueError(f"width multiplier must be > 0, got {width!r}")
    return max(1, int(round(channels * width)))


def vgg_pool(input_size: int) -> int:
    """Side of VGG's adaptive pool output: ``min(7, input_size // 32)``, at least 1."""
    return max(1, min(7, int(input_size) // 32))


def vgg11_plan(width: float, input_size: int = 224) -> dict:
    """VGG-11's channel plan at ``width``: ``{"features": [c or "M", ...], "hidden": units,
    "pool": p, "classifier_in": last conv channels * p * p}``."""
    features = [c if c == "M" else scaled(c, width) for c in VGG11_CFG]
    last = [c for c in features if c != "M"][-1]
    pool = vgg_pool(input_size)
    return {"features": features, "hidden": scaled(VGG_HIDDEN, width), "pool": pool,
            "classifier_in": last * pool * pool}


def resnet50_plan(width: float) -> dict:
    """ResNet-50's channel plan at ``width``: ``{"stem": c, "widths": [bottleneck width per stage],
    "outputs": [4 x width per stage], "layers": [3, 4, 6, 3], "fc_in": outputs[-1]}``."""
    widths = [scaled(c, width) for c in RESNET50_WIDTHS]
    outputs = [w * BOTTLENECK_EXPANSION for w in widths]
    return {"stem": scaled(RESNET_STEM, width), "widths": widths, "outputs": outputs,
            "layers": list(RESNET50_LAYERS), "fc_in": outputs[-1]}


def _conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def vgg11_param_count(width: float, num_classes: int, input_size: int = 224) -> int:
    """Exact trainable parameters of :func:`build_scaled` ``("vgg11", width, num_classes,
    input_size)``: 3x3 convs with bias, then Linear(classifier_in, hidden), Linear(hidden, hidden),
    Linear(hidden, num_classes). (torchvision vgg11 at 224 and 1000 classes: 132,863,336.)"""
    plan = vgg11_plan(width, input_size)
    total, cin = 0, 3
    for c in plan["features"]:
        if c != "M":
            total += _conv(cin, c, 3, True)
            cin = c
    hidden = plan["hidden"]
    fc = _linear(plan["classifier_in"], hidden) + _linear(hidden, hidden) + _linear(hidden, num_classes)
    return total + fc


def resnet50_param_count(width: float, num_classes: int) -> int:
    """Exact trainable parameters of :func:`build_scaled` ``("resnet50", width, num_classes)``:
    bias-free convs, BatchNorm weight + bias (2 per channel), the final Linear.
    (torchvision resnet50 at 1000 classes: 25,557,032.)"""
    plan = resnet50_plan(width)
    total = _conv(3, plan["stem"], 7, False) + 2 * plan["stem"]
    cin = plan["stem"]
    for stage, (mid, out, blocks) in enumerate(zip(plan["widths"], plan["outputs"], plan["layers"])):
        for block in range(blocks):
            total += _conv(cin, mid, 1, False) + 2 * mid + _conv(mid, mid, 3, False) + 2 * mid
            total += _conv(mid, out, 1, False) + 2 * out
            if block == 0 and (stage > 0 or cin != out):  # the projection shortcut
                total += _conv(cin, out, 1, False) + 2 * out
            cin = out
    return total + _linear(plan["fc_in"], num_classes)


def param_count(arch: str, width: float, num_classes: int, input_size: int = 224) -> int:
    """:func:`vgg11_param_count` or :func:`resnet50_param_count` by name; ValueError otherwise."""
    if arch == "vgg11":
        return vgg11_param_count(width, num_classes, input_size)
    if arch == "resnet50":
        return resnet50_param_count(width, num_classes)
    raise ValueError(f"no scaled builder for {arch!r} (known: {', '.join(SCALED_ARCHS)})")


# --------------------------------------------------------------------------- torch builders


def build_scaled(arch: str, width: float, num_classes: int, input_size: int = 224):
    """The width-scaled ``torch.nn.Module`` for square inputs of side ``input_size`` (random init;
    seed torch before calling).

    Raises ValueError for an unknown ``arch``; ImportError when torch/torchvision are missing."""
    if arch == "vgg11":
        return _build_vgg11(width, num_classes, input_size)
    if arch == "resnet50":
        return _build_resnet50(width, num_classes)
    raise ValueError(f"no scaled builder for {arch!r} (known: {', '.join(SCALED_ARCHS)})")


def _build_vgg11(width: float, num_classes: int, input_size: int):
    """torchvision's VGG with the scaled feature stack, the pool of :func:`vgg_pool` and a scaled
    classifier, initialised as torchvision initialises VGG (Linear: normal(0, 0.01), bias 0)."""
    from torch import nn
    from torchvision.models.vgg import VGG, make_layers

    plan = vgg11_plan(width, input_size)
    model = VGG(make_layers(plan["features"], batch_norm=False), num_classes=num_classes)
    model.avgpool = nn.AdaptiveAvgPool2d((plan["pool"], plan["pool"]))
    hidden = plan["hidden"]
    model.classifier = nn.Sequential(
        nn.Linear(plan["classifier_in"], hidden), nn.ReLU(True), nn.Dropout(p=0.5),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
        nn.Linear(hidden, num_classes),
    )
    for m in model.classifier.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)
    return model


def _build_resnet50(width: float, num_classes: int):
    """torchvision's ResNet forward with scaled stem and stage widths, built from torchvision's
    ``Bottleneck`` and initialised as torchvision initialises ResNet."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck, ResNet

    plan = resnet50_plan(width)
    model = ResNet(Bottleneck, list(RESNET50_LAYERS), num_classes=num_classes)  # the forward and pools
    model.inplanes = plan["stem"]
    model.conv1 = nn.Conv2d(3, plan["stem"], kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(plan["stem"])
    for i, (mid, blocks) in enumerate(zip(plan["widths"], RESNET50_LAYERS)):
        setattr(model, f"layer{i + 1}", model._make_layer(Bottleneck, mid, blocks, stride=1 if i == 0 else 2))
    model.fc = nn.Linear(plan["fc_in"], num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model
