"""The study's own network: lucidrains' denoising-diffusion-pytorch ``Unet``, called as a diffusers UNet is.

The study trained ``Unet(dim=64, dim_mults=(1, 2, 4, 8), channels=1, flash_attn=True)`` (35,705,089
parameters; docs/reference/ddpm.md section 0). ``StudyUnet`` *is* that class (a subclass, so its state dict has
exactly lucidrains' keys and loads into a plain ``Unet``); it only changes the calling convention to the one
the rest of the engine uses for diffusers' ``UNet2DModel``: ``net(x, t).sample``, where ``t`` may be one
timestep (a 0-d tensor or a number, as the samplers pass it) or one per image.

On disk a network is a folder holding ``config.json`` (the class, the library version and the constructor
arguments that rebuild it) and ``diffusion_pytorch_model.safetensors`` (the weights), the same two names a
diffusers model folder has, so the checkpoint layout does not depend on the family. No pickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from denoising_diffusion_pytorch import Unet
from denoising_diffusion_pytorch.version import __version__ as LIBRARY_VERSION

from core.errors import CspineError

CLASS_NAME = "LucidrainsUnet"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class NetOutput:
    """What diffusers' UNet2DModel returns (UNet2DOutput): the prediction under ``.sample``."""

    sample: torch.Tensor


class TimeAndClass(nn.Sequential):
    """The Unet's time MLP plus a class embedding added to its output, as diffusers' ``num_class_embeds`` does.

    It takes (B, 2) rows (timestep, class) where the plain MLP takes (B,) timesteps: the Unet's own forward
    passes its ``time`` argument to ``time_mlp`` untouched, so the class reaches every residual block without
    copying the library's forward. Its layers keep their keys (``time_mlp.0`` ...); the embedding is
    ``time_mlp.classes``.
    """

    def __init__(self, time_mlp: nn.Sequential, num_classes: int, dim: int) -> None:
        super().__init__(*time_mlp)
        self.n_layers = len(time_mlp)
        self.classes = nn.Embedding(num_classes, dim)

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        t, labels = time.unbind(-1)
        emb = t
        for layer in list(self)[:self.n_layers]:
            emb = layer(emb)
        return emb + self.classes(labels)


class StudyUnet(Unet):
    """lucidrains' Unet with the diffusers calling convention; ``kwargs`` are Unet's constructor arguments.

    ``num_classes`` (conditional generation, not a Unet argument) adds a class embedding to the timestep
    embedding (:class:`TimeAndClass`); heatmap conditions come in as extra input ``channels`` with
    ``out_dim`` the image's channels. Without them the network is exactly lucidrains' Unet.
    """

    def __init__(self, num_classes: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_kwargs = dict(kwargs, **({"num_classes": num_classes} if num_classes else {}))
        self.num_classes = num_classes
        if num_classes:
            self.time_mlp = TimeAndClass(self.time_mlp, num_classes, self.time_mlp[-1].out_features)

    def forward(self, x: torch.Tensor, t: torch.Tensor | int, x_self_cond: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None) -> NetOutput:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:  # the samplers pass one timestep for the whole batch
            t = t.expand(x.shape[0])
        if self.num_classes:
            labels = torch.zeros_like(t) if class_labels is None else class_labels.to(t.device)
            t = torch.stack([t.long(), labels.long()], dim=-1)
        return NetOutput(super().forward(x, t, x_self_cond))

    def save_pretrained(self, folder: Path | str) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # channels_last parameters are not contiguous in safetensors' sense: store them in the plain layout.
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        config = {"_class_name": CLASS_NAME, "library": "denoising-diffusion-pytorch",
                  "library_version": LIBRARY_VERSION, "kwargs": _jsonable(self.init_kwargs),
                  "parameters": parameter_count(self)}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def parameter_count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def build(kwargs: dict[str, Any]) -> StudyUnet:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return StudyUnet(**kwargs)


def is_lucidrains_folder(folder: Path) -> bool:
    path = Path(folder) / CONFIG_NAME
    return path.exists() and json.loads(path.read_text()).get("_class_name") == CLASS_NAME


def load(folder: Path | str) -> StudyUnet:
    """Rebuild a network saved by ``StudyUnet.save_pretrained`` and load its weights (strict)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        net = build(config["kwargs"])
        net.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CspineError(f"cannot load the network in {folder}: {str(exc).splitlines()[0]}; is the checkpoint "
                          f"complete?") from exc
    return net
