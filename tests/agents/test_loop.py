"""The one supervised loop: seeded batches, and a clear stop at the first non-finite value."""

import numpy as np
import pytest
import torch

from vla_sim.agents.training.loop import NonFiniteError, SupervisedLoop


def _loop(lr: float, data: torch.Tensor) -> tuple[SupervisedLoop, torch.nn.Linear]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def sample(rng: np.random.Generator) -> torch.Tensor:
        return data[torch.from_numpy(rng.integers(0, len(data), 4))]

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return ((model(batch[:, :2]) - batch[:, 2:]) ** 2).mean()

    return SupervisedLoop(list(model.parameters()), opt, sample, loss, seed=3), model


def test_the_same_seed_gives_the_same_losses_whatever_the_start():
    data = torch.randn(32, 3)
    whole, _ = _loop(0.1, data)
    all_losses = whole.run(0, 6)
    first, model = _loop(0.1, data)
    part = first.run(0, 3)
    second = SupervisedLoop(first.params, first.optimizer, first.sample, first.loss, seed=3)
    assert part + second.run(3, 6) == pytest.approx(all_losses)


def test_random_draws_inside_the_loss_repeat_on_resume_and_leave_torch_generator_alone():
    """A flow head draws noise inside its loss: step t's draws must not depend on the start."""
    data = torch.randn(32, 3)

    def noisy_loop() -> SupervisedLoop:
        loop, model = _loop(0.1, data)
        plain = loop.loss
        loop.loss = lambda batch: plain(batch) + torch.randn(()) ** 2
        return loop

    all_losses = noisy_loop().run(0, 6)
    first = noisy_loop()
    part = first.run(0, 3)
    torch.manual_seed(123)
    expected_next = torch.rand(())
    torch.manual_seed(123)
    second = SupervisedLoop(first.params, first.optimizer, first.sample, first.loss, seed=3)
    rest = second.run(3, 6)
    assert part + rest == pytest.approx(all_losses)
    assert torch.rand(()) == expected_next  # the caller's generator state is restored


def test_a_nan_in_the_data_stops_training_before_the_weights_change():
    data = torch.randn(32, 3)
    data[:, 2] = float("nan")
    loop, model = _loop(0.1, data)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteError, match="loss is nan at step 1"):
        loop.run(0, 5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert loop.in_update  # the interrupted step never finished


def test_an_exploding_learning_rate_stops_at_the_first_infinite_value():
    data = torch.randn(32, 3) * 1e20
    loop, _ = _loop(1e30, data)
    with pytest.raises(NonFiniteError):
        loop.run(0, 50)
