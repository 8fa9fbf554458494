"""Frozen judges: a committed judge is loaded when its key matches, and refused when its bytes changed."""

import pytest
import torch

from benchmark.core.errors import XbenchError
from metrics import judges


def test_a_frozen_judge_is_found_by_name_and_checked_by_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(judges, "FROZEN", tmp_path / "frozen")
    path = judges.judge_path("vc", "phantom", "0123abcd")  # under the test's private cache: absent
    assert judges.load_cached(path, "cpu") is None
    sha = judges.save({"w": torch.arange(3.0)}, tmp_path / "frozen" / path.name)
    state, found_sha = judges.load_cached(path, "cpu")
    assert found_sha == sha and torch.equal(state["w"], torch.arange(3.0))
    frozen = tmp_path / "frozen" / path.name
    data = bytearray(frozen.read_bytes())
    data[len(data) // 2] ^= 1
    frozen.write_bytes(bytes(data))
    with pytest.raises(XbenchError, match="wrong sha256"):
        judges.load_cached(path, "cpu")
