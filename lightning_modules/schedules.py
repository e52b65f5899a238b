"""Learning-rate schedules selectable from YAML (``model.init_args.lr_scheduler``)."""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupExponentialLR(LambdaLR):
    """Linear warm-up to the optimiser's lr over ``warmup_steps`` updates, then ``lr * gamma^t``
    per update (paper 2, appendix C.2: warm-up, then decay rate 0.999997). Stepped every update."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 50, gamma: float = 0.999997, last_epoch: int = -1) -> None:
        self.warmup_steps, self.gamma = max(0, int(warmup_steps)), float(gamma)
        super().__init__(optimizer, self._factor, last_epoch=last_epoch)

    def _factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.gamma ** (step - self.warmup_steps)
