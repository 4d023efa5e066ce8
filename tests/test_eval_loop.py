"""The shared training loop of the baselines and probes: its stopping rule, learning-rate drops,
warm-up, time budget (on a controllable clock) and the best epoch's weights, on a one-parameter
network whose validation losses the test scripts."""
from __future__ import annotations

import pytest
import torch

from galclip.eval.loop import LoopConfig, fit_to_plateau


class Scripted:
    """A one-weight network, a batch loss that moves it, and validation losses read from a list."""

    def __init__(self, val_losses):
        self.net = torch.nn.Linear(1, 1, bias=False)
        self.losses, self.epoch, self.lrs, self.weights = list(val_losses), 0, [], []

    def batch_loss(self, idx: torch.Tensor) -> torch.Tensor:
        return (self.net.weight - 1.0).pow(2).sum() * len(idx)

    def val(self) -> float:
        self.weights.append(float(self.net.weight.detach()))
        self.epoch += 1
        return self.losses[self.epoch - 1]

    def fit(self, cfg: LoopConfig, **kw):
        opt_lrs = self.lrs

        class Watch(torch.optim.AdamW):  # records the learning rate of every step
            def step(self, closure=None):
                opt_lrs.append(self.param_groups[0]["lr"])
                return super().step(closure)

        real, torch.optim.AdamW = torch.optim.AdamW, Watch
        try:
            return fit_to_plateau(self.net, self.batch_loss, self.val, torch.arange(8), cfg, **kw)
        finally:
            torch.optim.AdamW = real


def test_stops_after_patience_flat_epochs_and_keeps_the_best_epoch():
    s = Scripted([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0, 0.5])
    rec = s.fit(LoopConfig(epochs=8, batch_size=4, lr=0.1, patience=3))
    assert rec.epochs_run == 6 and rec.best_epoch == 3
    assert rec.stopped == "validation loss flat for 3 epochs"
    assert rec.history == [5.0, 4.0, 3.0, 3.5, 3.2, 3.1]
    assert float(s.net.weight.detach()) == s.weights[2]  # the weights after epoch 3, not the last ones


def test_without_patience_it_runs_the_whole_budget():
    s = Scripted([1.0, 2.0, 3.0, 4.0])
    rec = s.fit(LoopConfig(epochs=4, batch_size=8, patience=0))
    assert rec.epochs_run == 4 and rec.stopped == "max epochs" and rec.best_epoch == 1


def test_an_improvement_smaller_than_min_delta_counts_as_flat():
    s = Scripted([1.0, 1.0 - 1e-8, 1.0 - 2e-8, 0.5])
    rec = s.fit(LoopConfig(epochs=4, batch_size=8, patience=2, min_delta=1e-6))
    assert rec.epochs_run == 3 and rec.best_epoch == 1


def test_learning_rate_drops_after_each_lr_patience_flat_epochs():
    s = Scripted([1.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    rec = s.fit(LoopConfig(epochs=6, batch_size=4, lr=0.1, lr_patience=2, lr_factor=0.5, patience=5))
    assert rec.lr_drops == 2 and rec.lr_scale == 0.25 and rec.epochs_run == 6
    # two steps an epoch; a drop after epoch 3's (2nd flat) and epoch 5's (4th flat) validation
    # moves the rate by the next epoch's last step (the scheduler sets it after each step)
    assert s.lrs[1::2] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


def test_warm_up_rises_linearly_over_the_first_epoch():
    s = Scripted([3.0, 2.0])
    s.fit(LoopConfig(epochs=2, batch_size=2, lr=0.4, warmup_epochs=1))
    assert s.lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4])


def test_time_budget_stops_on_the_clock_it_is_given():
    ticks = iter(range(0, 1000, 10))  # each reading 10 s after the last
    s = Scripted([5.0, 4.0, 3.0, 2.0, 1.0])
    rec = s.fit(LoopConfig(epochs=5, batch_size=8, max_seconds=25), clock=lambda: next(ticks))
    assert rec.epochs_run == 3 and rec.stopped == "time budget 25 s" and rec.seconds == 40


def test_without_validation_rows_it_trains_the_budget_and_keeps_the_last_weights():
    s = Scripted([])
    rec = fit_to_plateau(s.net, s.batch_loss, None, torch.arange(8),
                         LoopConfig(epochs=3, batch_size=8, lr=0.1, patience=1))
    assert rec.epochs_run == 3 and rec.best_epoch is None and rec.history == []


def test_the_same_seed_gives_the_same_weights():
    def run(seed):
        torch.manual_seed(0)
        net = torch.nn.Linear(2, 1)
        x, y = torch.randn(32, 2), torch.randn(32, 1)
        fit_to_plateau(net, lambda b: ((net(x[b]) - y[b]) ** 2).mean(),
                       lambda: float(((net(x) - y) ** 2).mean()), torch.arange(32),
                       LoopConfig(epochs=3, batch_size=5, lr=0.05, seed=seed))
        return net.weight.detach().clone()

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
