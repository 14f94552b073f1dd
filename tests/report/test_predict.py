"""The report's per-sample predictions agree with the trainer's evaluation, clips included."""

from __future__ import annotations

import torch

from masnn.models import create_model
from masnn.report.sweep import predict
from masnn.train.config import LossCfg
from masnn.train.distributed import DistInfo
from masnn.train.engine import evaluate, make_loss


def test_predict_matches_evaluate_confusion_with_clip_votes() -> None:
    torch.manual_seed(0)
    model = create_model(
        "ma_snn3_tiny", num_classes=11, timesteps=4, input_size=(2, 16, 16), attn="ta",
        channels=(4, 8, 8), hidden=16,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    batches = []
    for b in (5, 3):  # k = 3 clips per sample: (k, T, B, C, H, W)
        x = (torch.rand(3, 4, b, 2, 16, 16, generator=gen) < 0.2).float()
        batches.append((x, torch.randint(0, 11, (b,), generator=gen)))
    stats = evaluate(
        model, batches, make_loss(LossCfg(), 11), device=torch.device("cpu"), info=DistInfo(),
        num_classes=11,
    )  # fmt: skip
    preds, labels = predict(model, batches, torch.device("cpu"))
    assert labels == [int(v) for _, y in batches for v in y]
    conf = [[0] * 11 for _ in range(11)]
    for p, y in zip(preds, labels):
        conf[y][p] += 1
    assert conf == stats.confusion
    assert sum(p == y for p, y in zip(preds, labels)) == stats.correct
