"""The VLA policy as a stable-baselines3 policy, for PPO: SB3's actor-critic whose features
extractor, action head and value head *are* a :class:`VLAPolicy`'s modules (the same objects),
so what PPO trains is what ``save_policy`` writes and ``load_policy`` rebuilds.

Values come from :meth:`VLAPolicy.value`: the value head on the shared features, or, with an
asymmetric critic (``critic_privileged_dim``), from ``obs["privileged"]`` and the
proprioception; ``forward``, ``predict_values`` and ``evaluate_actions`` are overridden for that.

Imports stable-baselines3; nothing else in ``agents.policies`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from vla_sim.config import config_to_dict

from .checkpoint import load_state_strict
from .config import VLAPolicyConfig
from .vla import VLAFeaturesExtractor, VLAPolicy, actor_critic_groups, fused


class VLAActorCriticPolicy(ActorCriticPolicy):
    """SB3 actor-critic whose extractor, action head and value head are a :class:`VLAPolicy`'s.

    Args (beyond SB3's): ``vla_config``: the VLAPolicyConfig as a dict; ``value_lr_scale``: the
    critic's learning rate over the actor's (its own Adam parameter group, whose ``lr_scale``
    :meth:`WarmStartPPO._update_learning_rate` keeps); ``log_std_lr_scale``: the same for the
    head's log-std (None: it trains with the actor); ``perception_lr_scale``: the same for the
    perception modules (:func:`~vla_sim.agents.policies.vla.perception_parameters`). Load BC weights with
    :meth:`load_vla_state`; :attr:`vla` is what ``save_policy`` writes.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, lr_schedule,
                 vla_config: dict | None = None, value_lr_scale: float = 1.0,
                 log_std_lr_scale: float | None = None,
                 perception_lr_scale: float | None = None, **kwargs: Any):
        self.vla_config = VLAPolicyConfig(**(vla_config or {}))
        self.value_lr_scale = float(value_lr_scale)
        self.log_std_lr_scale = None if log_std_lr_scale is None else float(log_std_lr_scale)
        self.perception_lr_scale = (None if perception_lr_scale is None
                                    else float(perception_lr_scale))
        if self.vla_config.head != "gaussian":
            raise ValueError(f"PPO needs a gaussian head, got {self.vla_config.head!r}")
        kwargs.update(features_extractor_class=VLAFeaturesExtractor,
                      features_extractor_kwargs={"config": self.vla_config}, net_arch=[],
                      ortho_init=False, share_features_extractor=True)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.vla = VLAPolicy(self.vla_config)
        # SB3's pieces become the VLA modules (the same objects, not copies).
        self.features_extractor = self.vla.extractor
        self.pi_features_extractor = self.vf_features_extractor = self.vla.extractor
        self.action_net = self.vla.action_head
        self.value_net = self.vla.value_head
        del self.log_std  # the head's log_std (normalised units) is used instead
        base = lr_schedule(1)
        self.optimizer = self.optimizer_class(
            actor_critic_groups(self.vla, base, base * self.value_lr_scale,
                                None if self.log_std_lr_scale is None
                                else base * self.log_std_lr_scale,
                                None if self.perception_lr_scale is None
                                else base * self.perception_lr_scale), lr=base,
            **{**fused(self.parameters()), **self.optimizer_kwargs})

    def critic_values(self, obs: dict[str, torch.Tensor], features: torch.Tensor,
                      detach: bool = False) -> torch.Tensor:
        """(B, 1) values, SB3's shape (see :meth:`VLAPolicy.value`)."""
        return self.vla.value(obs, features, detach).unsqueeze(-1)

    def forward(self, obs, deterministic: bool = False):
        features = self.extract_features(obs)  # net_arch=[]: the latents are the features
        distribution = self._get_action_dist_from_latent(features)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))
        return actions, self.critic_values(obs, features), log_prob

    def predict_values(self, obs) -> torch.Tensor:
        vla = self.vla
        if vla.asymmetric_critic and not vla.config.critic_features:  # no image encoding
            return vla.value_head(obs["privileged"],
                                  vla.extractor.normalized_state(obs)).reshape(-1, 1)
        return self.critic_values(obs, self.extract_features(obs))

    def evaluate_actions(self, obs, actions: torch.Tensor):
        features = self.extract_features(obs)
        distribution = self._get_action_dist_from_latent(features)
        return (self.critic_values(obs, features), distribution.log_prob(actions),
                distribution.entropy())

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor):
        head = self.vla.action_head
        log_std = head.log_std + head.action_std.log()  # env units, as GaussianHead.distribution
        return self.action_dist.proba_distribution(head(latent_pi), log_std)

    def load_vla_state(self, state: dict[str, torch.Tensor]) -> None:
        load_state_strict(self.vla, state, source="warm-start policy")

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(vla_config=config_to_dict(self.vla_config), value_lr_scale=self.value_lr_scale,
                    log_std_lr_scale=self.log_std_lr_scale,
                    perception_lr_scale=self.perception_lr_scale)
        for key in ("features_extractor_class", "features_extractor_kwargs", "net_arch",
                    "ortho_init", "share_features_extractor"):
            data.pop(key, None)
        return data
