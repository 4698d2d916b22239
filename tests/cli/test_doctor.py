import os

import pytest

from vla_sim.cli.main import main


@pytest.fixture
def corrupted_encoder(tmp_path):
    """A copy of the packaged encoder folder whose model.safetensors has one byte flipped
    (same size, so the SHA-256 comparison is what must catch it)."""
    from vla_sim.language.encoder import default_model_path

    src = default_model_path()
    dst = tmp_path / "encoder"
    dst.mkdir()
    for item in src.iterdir():
        if item.name != "model.safetensors":
            os.symlink(item, dst / item.name)
    data = bytearray((src / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (dst / "model.safetensors").write_bytes(bytes(data))
    return dst


def test_doctor_fails_clearly_on_a_corrupted_encoder_copy(corrupted_encoder, capsys):
    rc = main(["doctor", "--only", "encoder,ffmpeg", "--encoder-path", str(corrupted_encoder)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL  encoder" in out and "SHA-256" in out
    assert "fix: pip install --force-reinstall" in out
    assert "PASS  ffmpeg" in out


def test_doctor_passes_on_the_packaged_encoder(capsys):
    assert main(["doctor", "--only", "encoder,ffmpeg"]) == 0
    assert capsys.readouterr().out.count("PASS") == 2


def test_doctor_rejects_unknown_check():
    assert main(["doctor", "--only", "bogus"]) == 2


def test_doctor_passes_all_checks(capsys):
    rc = main(["doctor"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "FAIL" not in out
