import os
import pickle

import pytest
import torch

from lstmlm.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_of_plain_data(tmp_path):
    payload = {"model": {"w": torch.randn(3, 4)}, "step": 7, "vocab": ["a", "b"], "cfg": {"lr": 0.5, "x": None}}
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and loaded["vocab"] == ["a", "b"] and loaded["cfg"] == {"lr": 0.5, "x": None}
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "lstmlm-checkpoint", "version": 1, "x": _Payload()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match=str(raw)):
        load_checkpoint(raw)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_missing_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(1000)})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an lstmlm checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"step": 1})

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="previous checkpoint"):
        save_checkpoint(tmp_path / "c.pt", {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
