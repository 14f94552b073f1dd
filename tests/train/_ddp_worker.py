"""Worker for the DDP tests, launched by ``torchrun --nproc_per_node=2`` (gloo, CPU).

Usage: _ddp_worker.py GESTURE_ROOT OUT_DIR
Writes ``OUT_DIR/rank{r}.json`` (its eval shard and the reduced eval stats) and, on rank 0,
``OUT_DIR/ddp_params.pt`` (parameters after K DDP training steps of a BN-free SNN).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from masnn.train.build import eval_loader
from masnn.train.config import load_config
from masnn.train.data import build_data, make_loader
from masnn.train.distributed import eval_indices, init_distributed, train_batches
from masnn.train.engine import evaluate, make_loss, train_one_epoch
from tests.train.ddp_common import K_STEPS, bn_free_snn, eval_model, overrides

root, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
device = torch.device("cpu")
info = init_distributed(device)
assert info.world_size == 2
cfg = load_config(None, overrides(root, out))
data = build_data(cfg.data, cfg.run.seed, progress=False)
loss_fn = make_loss(cfg.loss, data.num_classes)

# 1. evaluation: disjoint unpadded shards, counts reduced over ranks
model = eval_model(data)
stats = evaluate(
    model,
    eval_loader(data.test, cfg, info),
    loss_fn,
    device=device,
    info=info,
    amp="none",
    num_classes=data.num_classes,
)
shard = eval_indices(len(data.test), info)
(out / f"rank{info.rank}.json").write_text(json.dumps({"shard": shard, "stats": asdict(stats)}))

# 2. K training steps of a BN-free SNN with global batches split over the ranks
torch.manual_seed(0)
net = nn.parallel.DistributedDataParallel(bn_free_snn(data))
opt = torch.optim.SGD(net.parameters(), lr=0.5)
batches = train_batches(len(data.train), cfg.run.batch_size, cfg.run.seed, 0, info)[:K_STEPS]
train_one_epoch(
    net,
    make_loader(data.train, batches, 0),
    opt,
    loss_fn,
    device=device,
    info=info,
    epoch=0,
)
if info.is_main:
    torch.save({k: v.detach() for k, v in net.module.state_dict().items()}, out / "ddp_params.pt")
torch.distributed.barrier()  # no rank leaves the group while another still works
torch.distributed.destroy_process_group()
