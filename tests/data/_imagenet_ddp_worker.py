"""Worker of the ImageNet DDP evaluation test, launched by ``torchrun --nproc_per_node=2``.

Usage: _imagenet_ddp_worker.py IMAGE_ROOT OUT_DIR
Writes ``OUT_DIR/rank{r}.json``: this rank's shard and the reduced top-1/top-5 counts.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from masnn.train.config import load_config
from masnn.train.data import build_data
from masnn.train.distributed import eval_indices, init_distributed
from masnn.train.runner import evaluate_split
from tests.data.test_imagenet import eval_overrides, small_model

root, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
device = torch.device("cpu")
info = init_distributed(device)
assert info.world_size == 2
cfg = load_config(None, eval_overrides(root, out))
data = build_data(cfg.data, cfg.run.seed, progress=False)
stats = evaluate_split(small_model(data), data.test, cfg, data, info, device)
shard = eval_indices(len(data.test), info)
(out / f"rank{info.rank}.json").write_text(json.dumps({"shard": shard, "stats": asdict(stats)}))
torch.distributed.barrier()  # no rank leaves the group while another still works
torch.distributed.destroy_process_group()
