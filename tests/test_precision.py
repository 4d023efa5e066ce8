"""The training precision policy (galclip.precision): ``auto`` follows the hardware, fixed settings
are kept, unknown ones refused; the Lightning stages and the baselines' loop both obey it."""
from __future__ import annotations

import pytest
import torch

from galclip import precision as P
from galclip.eval.loop import LoopConfig, fit_to_plateau
from galclip.train.runner import precision as trainer_precision
from galclip.train.schema import TrainerConfig


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": native)
    assert P.resolve("auto", "cpu") == expected
    assert trainer_precision(TrainerConfig(precision="auto", accelerator="cpu")) == expected
    # a fixed setting is never changed by the hardware
    assert P.resolve("32-true") == "32-true" and P.resolve("bf16-mixed") == "bf16-mixed"
    assert trainer_precision(TrainerConfig(precision="16-mixed", accelerator="gpu")) == "16-mixed"


def test_unknown_setting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'fp8'.*auto, 32-true, bf16-mixed"):
        P.resolve("fp8")


def test_native_bf16_answers_for_each_device_kind():
    assert isinstance(P.native_bf16("cpu"), bool)
    assert P.native_bf16("meta") is False
    if not torch.cuda.is_available():
        assert P.native_bf16("cuda") is False


def test_autocast_runs_matrix_products_in_bf16_only_when_asked():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with P.autocast("bf16-mixed"):
        assert (a @ b).dtype == torch.bfloat16
    with P.autocast("32-true"):
        assert (a @ b).dtype == torch.float32


def _fit(precision: str):
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.arange(1.0, 9.0)[:, None]
    net = torch.nn.Linear(8, 1)
    seen = []

    def batch_loss(idx):
        out = net(x[idx])
        seen.append(out.dtype)
        return (out.float() - y[idx]).pow(2).mean()

    def val():
        with torch.no_grad():
            return float((net(x) - y).pow(2).mean())

    rec = fit_to_plateau(net, batch_loss, val, torch.arange(256),
                         LoopConfig(epochs=30, batch_size=32, lr=0.05, precision=precision))
    return rec, set(seen), net


def test_the_baselines_loop_trains_under_bf16_autocast_and_keeps_fp32_weights():
    rec16, dtypes16, net16 = _fit("bf16-mixed")
    rec32, dtypes32, _ = _fit("32-true")
    assert dtypes16 == {torch.bfloat16} and dtypes32 == {torch.float32}
    assert net16.weight.dtype == torch.float32  # the master weights stay fp32
    # both learn the linear map: the validation loss falls by orders of magnitude
    assert rec16.history[-1] < 1e-2 * rec16.history[0]
    assert rec32.history[-1] < 1e-2 * rec32.history[0]


def test_a_baseline_with_an_unknown_precision_names_its_config_field():
    from galclip.eval.evaluate import _supervised_config
    from galclip.eval.schema import ImageBaseline

    with pytest.raises(ValueError, match="baselines.*precision.*'half'"):
        _supervised_config(ImageBaseline(precision="half"), 0)
    cfg = _supervised_config(ImageBaseline(precision="auto"), 0)
    assert cfg.precision == P.resolve("auto")
