"""VL pre-training (InfoNCE, retrieval, init of BC) and the action-chunk autoencoder."""

import math

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy
from vla_sim.agents.policies.latent import (
    ActionAEConfig,
    LatentActionPolicy,
    save_latent_policy,
)
from vla_sim.agents.training.pretrain_action import (
    action_chunks,
    latent_demos,
    train_action_ae,
)
from vla_sim.agents.training.pretrain_vl import (
    VLPretrainConfig,
    describe_scene,
    info_nce_loss,
    init_policy_vision,
    load_vl,
    make_pairs,
    pretrain_vl,
    save_vl,
)
from vla_sim.data.demos import DemoArrays
from vla_sim.language.encoder import HashingTextEncoder


def test_info_nce_identity_case_matches_hand_computation():
    # Identity similarities, T = 0.5: each row's logits are 2 on the diagonal and 0 elsewhere, so
    # CE = -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2) in both directions.
    emb = torch.eye(3)
    loss = info_nce_loss(emb, emb, 1.0 / 0.5)
    assert float(loss) == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_info_nce_is_symmetric_and_merges_shared_texts():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert float(info_nce_loss(a, b, 3.0)) == pytest.approx(float(info_nce_loss(b, a, 3.0)), rel=1e-6)
    # Two images of one text (rows 0 and 1): text column appears once; both images are positives.
    img = torch.eye(3)[[0, 0, 1]]
    txt = torch.eye(3)[[0, 0, 1]]
    loss = info_nce_loss(img, txt, 1.0, torch.tensor([7, 7, 9]))
    # i2t: rows over 2 texts, logits (1,0),(1,0),(0,1) -> each CE = log(1 + e^-1).
    i2t = math.log(1 + math.exp(-1))
    # t2i: text 7 over images logits (1,1,0): mean of log-probs of images 0,1 = log(e/(2e+1));
    # text 9: logits (0,0,1) -> log(e/(e+2)).
    t2i = -0.5 * (math.log(math.e / (2 * math.e + 1)) + math.log(math.e / (math.e + 2)))
    assert float(loss) == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)


def _colour_demos(n_eps=8, steps=6, size=16):
    """Each episode's frames are a flat colour; the instruction names the colour."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
               "yellow": (230, 220, 30)}
    names = list(colours)
    images, instr, eps = [], [], []
    rng = np.random.default_rng(0)
    for e in range(n_eps):
        c = names[e % 4]
        for _ in range(steps):
            img = np.full((size, size, 3), colours[c], np.uint8)
            images.append(np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8))
            instr.append(f"reach the {c} cube")
            eps.append(e)
    n = len(images)
    return DemoArrays.from_steps({"image": np.stack(images)}, np.zeros((n, 22)),
                                 rng.uniform(-1, 1, (n, 4)), instr, eps)


def test_vl_pretraining_learns_retrieval_and_initialises_policy(tmp_path):
    demos = _colour_demos(n_eps=16, steps=4)
    cfg = VLPretrainConfig(steps=60, batch_size=16, lr=3e-3, proj_dim=16, val_fraction=0.5,
                           retrieval_k=4, device="cpu", policy=VLAPolicyConfig(**SMALL))
    res = pretrain_vl(make_pairs(demos, "image"), cfg, encoder=HashingTextEncoder(384))
    assert res.losses[-1] < res.losses[0]
    assert res.retrieval_train == 1.0 and res.chance_train == 0.25
    assert res.retrieval_after == 1.0 and res.chance >= 0.25
    save_vl(res.model, cfg, tmp_path / "vl")
    policy = VLAPolicy(VLAPolicyConfig(**SMALL))
    copied = init_policy_vision(policy, tmp_path / "vl")
    assert "fc.1.weight" in copied and not any(k.startswith("film") for k in copied)
    assert torch.equal(policy.extractor.vision["front"].fc[1].weight, load_vl(tmp_path / "vl")[0].vision.fc[1].weight)


def test_scene_description_lists_objects():
    rand = {"objects": [{"color": "red", "shape": "cube"}, {"color": "blue", "shape": "bowl"},
                        {"color": "green", "shape": "sphere"}]}
    assert describe_scene(rand) == "a table with a red cube, a blue bowl and a green sphere"
    assert describe_scene(None) == "an empty table"


def test_action_chunks_stay_inside_their_episode():
    actions = np.arange(10, dtype=np.float32)[:, None].repeat(4, 1)
    chunks = action_chunks(actions, np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2]), 3)
    assert chunks[:, :, 0].tolist()[:4] == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 5]]
    assert chunks[9, :, 0].tolist() == [9, 9, 9]


def test_action_autoencoder_reconstructs_a_tiny_set(tmp_path):
    rng = np.random.default_rng(0)
    # 2-D structure in 4-D actions: an AE with a 2-d latent can reconstruct it.
    base = rng.uniform(-1, 1, (200, 2)).astype(np.float32)
    actions = np.concatenate([base, base[:, :1] * 0.5, -base[:, 1:]], 1)
    episodes = np.repeat(np.arange(20), 10)
    cfg = ActionAEConfig(chunk=1, latent_dim=2, hidden=[32], steps=400, batch_size=64, lr=3e-3)
    res = train_action_ae(actions, episodes, cfg)
    assert np.mean(res.losses[-20:]) < 0.2 * np.mean(res.losses[:20])
    assert res.val_mse < 0.1 * res.baseline_mse
    # Latent policy: BC targets are latents; act decodes a chunk into a valid action.
    demos = DemoArrays.from_steps({"image": rng.integers(0, 255, (200, 16, 16, 3), dtype=np.uint8)},
                                  np.zeros((200, 22)), actions, ["reach it"] * 200, episodes)
    assert latent_demos(demos, res.model).actions.shape == (200, 2)
    inner = VLAPolicy(VLAPolicyConfig(**{**SMALL, "action_dim": 2}))
    inner.text_encoder = HashingTextEncoder()
    pol = LatentActionPolicy(inner, res.model)
    obs = {"image": demos.images["image"][0], "state": np.zeros(22, np.float32),
           "instruction": "reach it"}
    a = pol.act(obs)
    assert a.shape == (4,) and np.all(np.abs(a) <= 1)
    save_latent_policy(pol, tmp_path / "lat")
    again = load_policy(tmp_path / "lat")
    again.policy.text_encoder = HashingTextEncoder()
    assert np.allclose(again.act(obs), a, atol=1e-6)


def test_bc_starts_from_the_pretrained_vision_encoder(tmp_path):
    from vla_sim.agents.policies import load_policy
    from vla_sim.agents.training.bc import BCConfig
    from vla_sim.agents.training.pretrain_vl import (
        VisionLanguageModel,
        train_bc_with_init,
    )

    demos = _colour_demos()
    pcfg = VLAPolicyConfig(**SMALL)
    torch.manual_seed(3)
    vl = VisionLanguageModel(VLPretrainConfig(policy=pcfg, device="cpu"))
    bc = BCConfig(steps=2, batch_size=4, lr=1e-9, warmup_steps=0, device="cpu", tensorboard=False,
                  progress=False, val_every_grad_steps=1000, checkpoint_every_grad_steps=1000, policy=pcfg)
    res = train_bc_with_init(demos, tmp_path / "run", bc, lambda p: init_policy_vision(p, vl),
                             encoder=HashingTextEncoder())
    assert res.steps == 2
    trained = load_policy(tmp_path / "run" / "last")
    # lr ~0: the conv weights are still the pre-trained ones, not train_bc's own init.
    w = trained.extractor.vision["front"].stages[0]["conv"].weight
    assert torch.allclose(w, vl.vision.stages[0]["conv"].weight, atol=1e-6)
