"""Process set-up of a run: global torch state (restored on exit), seeding, device and DDP."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from masnn.train.config import TrainConfig
from masnn.train.distributed import DistInfo, init_distributed, shutdown_distributed


@contextlib.contextmanager
def torch_globals_restored() -> Iterator[None]:
    """Restore what a run changes globally: thread count, deterministic mode, cuDNN benchmark,
    ``CUBLAS_WORKSPACE_CONFIG``, the current CUDA device and the python / numpy / torch RNG
    states (so ``train()`` leaves the caller's process as it found it, also when it raises).
    The process group is torn down separately (``shutdown_distributed``)."""
    threads = torch.get_num_threads()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.is_available()
    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
    cuda_dev = torch.cuda.current_device() if cuda else None
    try:
        yield
    finally:
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.backends.cudnn.benchmark = bench
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
            torch.cuda.set_device(cuda_dev)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def run_process(cfg: TrainConfig) -> Iterator[tuple[torch.device, DistInfo]]:
    """Threads, device, process group and seeds of a run; everything restored on exit."""
    with torch_globals_restored():
        if cfg.run.threads is not None:
            torch.set_num_threads(cfg.run.threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        info = init_distributed(device)
        try:
            if info.enabled and device.type == "cuda":
                torch.cuda.set_device(info.local_rank)
                device = torch.device("cuda", info.local_rank)
            seed_everything(cfg.run.seed, cfg.run.deterministic)
            yield device, info
        finally:
            shutdown_distributed()
