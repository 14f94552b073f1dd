"""The layout contract module and the readouts."""

from __future__ import annotations

import pytest
import torch

from masnn.layout import TIME_MAJOR, from_time_major, repeat_over_time, to_time_major
from masnn.readout import last_step, mean_over_time, spike_count, vote


def test_layout_round_trip_non_square():
    x = torch.arange(2 * 3 * 2 * 4 * 5, dtype=torch.float32).reshape(2, 3, 2, 4, 5)  # B, T
    x_seq = to_time_major(x, "BTCHW")
    assert TIME_MAJOR == "TBCHW"
    assert x_seq.shape == (3, 2, 2, 4, 5)
    assert torch.equal(x_seq[1, 0], x[0, 1])
    assert torch.equal(from_time_major(x_seq, "BTCHW"), x)
    assert to_time_major(x_seq, "TBCHW") is x_seq
    with pytest.raises(ValueError, match="unknown layout 'BCTHW'; allowed"):
        to_time_major(x, "BCTHW")


def test_repeat_over_time():
    img = torch.randn(2, 3, 4, 5)
    x_seq = repeat_over_time(img, 3)
    assert x_seq.shape == (3, 2, 3, 4, 5)
    assert all(torch.equal(f, img) for f in x_seq)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="timesteps must be an int >= 1"):
            repeat_over_time(img, bad)


def test_readouts():
    x_seq = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]])  # (T=3, B=1, K=2)
    assert torch.equal(mean_over_time(x_seq), torch.tensor([[2 / 3, 1 / 3]]))
    assert torch.equal(spike_count(x_seq), torch.tensor([[2.0, 1.0]]))
    assert torch.equal(last_step(x_seq), torch.tensor([[1.0, 1.0]]))
    assert torch.equal(vote(torch.arange(6.0).reshape(1, 6), 3), torch.tensor([[1.0, 4.0]]))
    with pytest.raises(ValueError, match="cannot vote"):
        vote(torch.zeros(1, 5), 2)
    with pytest.raises(ValueError, match="time-major"):
        mean_over_time(torch.zeros(3))
