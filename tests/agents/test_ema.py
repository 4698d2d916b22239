"""BC's weight average: the saved policy is the EMA of the trained weights, and it resumes."""

import pytest
import torch
from torch import nn

from vla_sim.agents.policies import load_policy
from vla_sim.agents.training.bc import train_bc
from vla_sim.agents.training.ema import WeightEMA, ema_decay_at
from vla_sim.config import ConfigError

from test_bc import config, demos, encoder  # noqa: F401  (fixtures)


def test_average_follows_the_ramped_decay():
    net = nn.Linear(1, 1, bias=False)
    ema = WeightEMA(net, decay=0.9)
    expected = None
    for t, value in enumerate([1.0, 3.0, -2.0, 5.0, 0.5, 4.0]):
        net.weight.data.fill_(value)
        ema.update(net)
        if expected is None:
            expected = value  # the first update copies the weights
        else:
            d = ema_decay_at(0.9, t - 1)
            expected = d * expected + (1 - d) * value
        assert float(ema.module.weight.detach()) == pytest.approx(expected, rel=1e-6)
    assert ema.updates == 6
    assert ema_decay_at(0.9, 0) == pytest.approx(0.1) and ema_decay_at(0.9, 1000) == 0.9


def test_buffers_are_copied_not_averaged():
    net = nn.BatchNorm1d(2)
    ema = WeightEMA(net, decay=0.99)
    ema.update(net)
    net.running_mean.fill_(7.0)
    ema.update(net)
    assert torch.equal(ema.module.running_mean, torch.full((2,), 7.0))


def test_bc_saves_the_average_not_the_raw_weights(tmp_path, demos, encoder):  # noqa: F811
    train_bc(demos, tmp_path / "raw", config(), encoder=encoder)
    train_bc(demos, tmp_path / "ema", config(ema_decay=0.9), encoder=encoder)
    raw = load_policy(tmp_path / "raw" / "last").state_dict()
    avg = load_policy(tmp_path / "ema" / "last").state_dict()
    state = torch.load(tmp_path / "ema" / "last" / "trainer_state.pt", weights_only=True)
    key = "action_head.mean.weight"
    # The raw weights of the EMA run are the plain run's (same seed, same batches) ...
    torch.testing.assert_close(state["raw_weights"][key], raw[key], rtol=0, atol=0)
    # ... and what it saves for acting is their average, a different tensor.
    assert not torch.equal(avg[key], raw[key])
    # Buffers (the dataset's normalisation) are the policy's own, not averaged.
    torch.testing.assert_close(avg["action_head.action_std"], raw["action_head.action_std"])
    assert state["ema_updates"] == 8


def test_resumed_ema_run_matches_an_uninterrupted_one(tmp_path, demos, encoder):  # noqa: F811
    full = train_bc(demos, tmp_path / "full", config(ema_decay=0.9), encoder=encoder)
    train_bc(demos, tmp_path / "part", config(ema_decay=0.9, steps_this_run=4), encoder=encoder)
    resumed = train_bc(demos, tmp_path / "part", config(ema_decay=0.9), resume=True,
                       encoder=encoder)
    assert resumed.train_losses == full.train_losses
    a = load_policy(tmp_path / "full" / "last").state_dict()
    b = load_policy(tmp_path / "part" / "last").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("bad", ["1.0", "-0.1", "nan"])
def test_bad_ema_decay_is_refused_by_name(bad):
    with pytest.raises((ConfigError, ValueError), match="ema_decay"):
        config(ema_decay=bad)


def _train_linear(ema_decay: float) -> tuple[torch.nn.Linear, list[torch.Tensor]]:
    """train_steps on a linear fit, recording the raw weights after every step."""
    import numpy as np

    from vla_sim.agents.training.configs import BCConfig
    from vla_sim.agents.training.loop import train_steps

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    data = torch.randn(64, 3)
    raw: list[torch.Tensor] = []

    def sample(rng: np.random.Generator) -> torch.Tensor:
        return data[torch.from_numpy(rng.integers(0, len(data), 8))]

    def loss(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return ((m(batch[:, :2]) - batch[:, 2:]) ** 2).mean()

    cfg = BCConfig(steps=12, lr=0.05, warmup_steps=0, ema_decay=ema_decay)
    train_steps(model, sample, loss, cfg,
                log=lambda _s, _l: raw.append(model.weight.detach().clone()))
    return model, raw


def test_train_steps_leaves_the_policy_with_the_average_of_its_steps():
    plain, raw = _train_linear(0.0)
    averaged, raw_again = _train_linear(0.8)
    assert all(torch.equal(a, b) for a, b in zip(raw, raw_again))  # same raw trajectory
    expected = raw[0]
    for t, w in enumerate(raw[1:]):
        d = ema_decay_at(0.8, t)
        expected = d * expected + (1 - d) * w
    torch.testing.assert_close(averaged.weight.detach(), expected)
    assert not torch.equal(averaged.weight, plain.weight)
