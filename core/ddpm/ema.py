"""Exponential moving average of the weights, updated as the reference's ema-pytorch does.

The study's Trainer calls ``EMA(model, beta=0.995, update_every=10)`` with ema-pytorch's defaults
(``update_after_step=100``, ``inv_gamma=1``, ``power=2/3``, ``min_value=0``) after every optimizer step:

* the first call copies the online weights;
* every ``update_every``-th call (counted from 0) copies the weights while the call index is at most
  ``update_after_step``, and afterwards moves the average with
  ``decay = clamp(1 - (1 + e) ** -power, 0, beta)``, ``e = calls_so_far - update_after_step - 1``.

Parameters and buffers are both averaged (the reference's default). The state (a plain dict of tensors plus
the call counter) is saved in every checkpoint through accelerate's ``register_for_checkpointing``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, beta: float, update_every: int, update_after_step: int,
                 power: float, inv_gamma: float = 1.0, min_value: float = 0.0) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.beta, self.every, self.after = float(beta), int(update_every), int(update_after_step)
        self.power, self.inv_gamma, self.min_value = float(power), float(inv_gamma), float(min_value)
        self.step = 0
        self.initted = False

    def current_decay(self) -> float:
        epoch = max(self.step - self.after - 1, 0)
        if epoch <= 0:
            return 0.0
        value = 1.0 - (1.0 + epoch / self.inv_gamma) ** -self.power
        return min(max(value, self.min_value), self.beta)

    @torch.no_grad()
    def update(self, online: torch.nn.Module) -> None:
        step = self.step
        self.step += 1
        if not self.initted:
            self._copy(online)
            self.initted = True
            return
        if step % self.every:
            return
        if step <= self.after:
            self._copy(online)
            return
        weight = 1.0 - self.current_decay()
        targets, sources = self._pairs(online)
        torch._foreach_lerp_(targets, sources, weight)

    def _pairs(self, online: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ema_tensors = [*self.model.parameters(), *self.model.buffers()]
        src = [*online.parameters(), *online.buffers()]
        targets, sources = [], []
        for t, s in zip(ema_tensors, src):
            if t.dtype.is_floating_point:
                targets.append(t.data)
                sources.append(s.data.to(t.dtype))
        return targets, sources

    def _copy(self, online: torch.nn.Module) -> None:
        for t, s in zip([*self.model.parameters(), *self.model.buffers()], [*online.parameters(), *online.buffers()]):
            t.data.copy_(s.data)

    # accelerate's register_for_checkpointing protocol
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "step": torch.tensor(self.step),
                "initted": torch.tensor(self.initted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])
        self.initted = bool(state["initted"])
