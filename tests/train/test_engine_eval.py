"""evaluate(): single / majority / official clip rules and the confusion matrix, by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from masnn.train.distributed import DistInfo
from masnn.train.engine import evaluate

K = 3  # classes


class _Echo(nn.Module):
    """Outputs the input's channel means: the test writes the logits into the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, K, 1, 1)
        return x.mean(dim=(0, 3, 4))


def _clips(logits: list[list[list[float]]]) -> torch.Tensor:
    """``logits[k][b]`` -> input ``(k, T=2, B, K, 1, 1)``."""
    t = torch.tensor(logits, dtype=torch.float32)  # (k, B, K)
    return t[:, None, :, :, None, None].expand(-1, 2, -1, -1, 1, 1).contiguous()


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, y)


def _eval(batches, num_classes=None):
    return evaluate(
        _Echo(),
        batches,
        _loss,
        device=torch.device("cpu"),
        info=DistInfo(),
        num_classes=num_classes,
    )


def test_single_clip_confusion_and_recall() -> None:
    # predictions 0, 2, 2, 1 for labels 0, 1, 2, 1
    x = _clips([[[5, 0, 0], [0, 1, 3], [0, 0, 4], [0, 2, 1]]])[0]
    y = torch.tensor([0, 1, 2, 1])
    s = _eval([(x, y)])
    assert s.confusion == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert s.correct == 3 and s.samples == 4 and s.acc == s.acc_single == 0.75
    assert s.per_class() == [1.0, 0.5, 1.0]


def test_clip_votes_drive_the_confusion_matrix() -> None:
    # sample 0 (label 0): clips vote 0, 1, 0 -> majority 0; clip 0 right; 2/3 right (official)
    # sample 1 (label 1): clips vote 2, 2, 1 -> majority 2; clip 0 wrong; 1/3 right
    x = _clips(
        [
            [[3, 0, 0], [0, 0, 3]],
            [[0, 3, 0], [0, 0, 3]],
            [[3, 0, 0], [0, 3, 0]],
        ]
    )
    y = torch.tensor([0, 1])
    s = _eval([(x, y)], num_classes=4)  # a class absent from the split
    assert s.acc_single == 0.5 and s.acc_majority == 0.5 and s.acc_official == 0.5
    assert s.confusion == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert s.per_class() == [1.0, 0.0, None, None]


def test_confusion_sums_over_batches() -> None:
    a = _clips([[[1, 0, 0]]])[0]
    b = _clips([[[0, 0, 1], [1, 0, 0]]])[0]
    s = _eval([(a, torch.tensor([0])), (b, torch.tensor([2, 0]))])
    assert s.confusion == [[2, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert sum(map(sum, s.confusion)) == s.samples == 3


def test_out_of_range_labels_raise() -> None:
    x = _clips([[[0, 0, 1]]])[0]  # 3 outputs
    with pytest.raises(ValueError, match="num_classes=2"):
        _eval([(x, torch.tensor([0]))], num_classes=2)
    with pytest.raises(ValueError, match="label 5"):
        _eval([(x, torch.tensor([5]))])
    with pytest.raises(ValueError, match="got label 3, 3 outputs"):
        _eval([(x, torch.tensor([3]))], num_classes=3)


def test_ddp_needs_num_classes() -> None:
    info = DistInfo(rank=0, world_size=2, local_rank=0)
    with pytest.raises(ValueError, match="needs num_classes under DDP"):
        evaluate(_Echo(), [], _loss, device=torch.device("cpu"), info=info)


def test_per_class_table_counts_ties_and_absent_classes() -> None:
    from masnn.cli.train import format_per_class

    conf = [[2, 1, 1], [0, 0, 0], [3, 0, 1]]
    lines = format_per_class(conf, ["0", "1", "2"]).splitlines()
    assert lines[0].startswith("class  ")  # header wider than the names
    assert lines[1].split() == ["0", "50.00%", "4", "1", "(1)"]  # tie 1 vs 2: lowest index
    assert lines[2].split() == ["1", "-", "0"]
    assert lines[3].split() == ["2", "25.00%", "4", "0", "(3)"]
