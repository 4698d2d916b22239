"""Corrupt checkpoints and trainer states end in one line naming the file, never a traceback."""

import torch
from test_policy import make_policy

from vla_sim.agents.policies import load_policy, save_policy
from vla_sim.agents.training.common import TRAINER_STATE_FILE, load_trainer_state
from vla_sim.cli.main import main


def _saved(tmp_path):
    save_policy(make_policy(), tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_a_truncated_weights_file_is_refused_by_name(tmp_path, capsys):
    ckpt = _saved(tmp_path)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    rc = main(["eval", "--policy", str(ckpt), "--env", "Reach", "--episodes", "1",
               "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert rc == 2 and "model.safetensors" in err and "unreadable weights" in err
    assert len(err.strip().splitlines()) == 1


def test_invalid_json_in_a_checkpoint_config_is_refused_by_name(tmp_path):
    ckpt = _saved(tmp_path)
    (ckpt / "config.json").write_text("{not json")
    try:
        load_policy(ckpt)
    except ValueError as exc:
        assert "config.json" in str(exc) and "not valid JSON" in str(exc)
    else:
        raise AssertionError("a corrupt config.json loaded")


def test_an_empty_trainer_state_is_refused_by_name(tmp_path):
    (tmp_path / TRAINER_STATE_FILE).write_bytes(b"")
    try:
        load_trainer_state(tmp_path)
    except ValueError as exc:
        assert TRAINER_STATE_FILE in str(exc) and "unreadable" in str(exc)
    else:
        raise AssertionError("an empty trainer state loaded")
    torch.save({"step": 3}, tmp_path / TRAINER_STATE_FILE)
    assert load_trainer_state(tmp_path) == {"step": 3}


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["collect", "--env", "Reach", "--episodes", "1", "--out", str(blocker / "data"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and str(blocker) in err and len(err.strip().splitlines()) == 1


def test_nan_weights_are_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt = _saved(tmp_path)
    weights = load_file(str(ckpt / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[name][0] = float("nan")
    save_file(weights, str(ckpt / "model.safetensors"))
    try:
        load_policy(ckpt)
    except ValueError as exc:
        assert "non-finite" in str(exc) and name in str(exc)
    else:
        raise AssertionError("NaN weights loaded")


def test_a_collect_refused_by_its_checks_leaves_nothing_and_the_corrected_command_runs(
        tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["collect", "--env", "Reach", "--episodes", "1", "--out", str(out),
                 "--cameras", "front,top", "--no-progress"]) == 2
    assert "cameras" in capsys.readouterr().err and not out.exists()
    assert main(["collect", "--env", "Reach", "--episodes", "1", "--out", str(out),
                 "--no-progress"]) == 0
