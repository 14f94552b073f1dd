"""The one frame path of the event datasets: :class:`EventDataset`.

A dataset opened with a :class:`~masnn.frames.FrameCfg` frames its own samples, in
:meth:`EventDataset.frames`; training (``masnn.train.data``) calls exactly that method with a
per-sample random generator, so the frames a dataset yields are the frames training uses.
Deterministic configurations (``count`` / ``time`` modes) may be integrated once into the
dataset's cache; ``window`` configurations are integrated per access.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from masnn.events.schema import SensorSize
from masnn.frames.integrate import FrameCfg, to_frames


class EventDataset:
    """Base of the event-camera datasets: labels, raw events and framing per :class:`FrameCfg`.

    Subclasses set ``sensor``, ``num_classes``, ``split``, ``transform``, ``frame_cfg``,
    ``_labels`` (int64 per sample) and ``_frames`` (cached frames or ``None``), call
    :meth:`_init_framing`, and implement :meth:`events`.
    """

    sensor: SensorSize
    num_classes: int
    split: str
    transform: Callable[[Any], Any] | None
    frame_cfg: FrameCfg | None
    _labels: np.ndarray
    _frames: np.ndarray | None = None

    def _init_framing(self, frame_cfg: FrameCfg | None, seed: int | None) -> None:
        if frame_cfg is not None and not isinstance(frame_cfg, FrameCfg):
            raise TypeError(f"frame_cfg must be a FrameCfg or None, got {type(frame_cfg).__name__}")
        self.frame_cfg = frame_cfg
        #: the dataset's own generator, for window starts drawn by ``ds[i]`` (training passes
        #: its own per-sample generator to :meth:`frames` instead)
        self._rng = np.random.default_rng(seed)

    def events(self, index: int) -> np.ndarray:
        """The raw events of sample ``index`` (no framing, no transform)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """Label of every sample."""
        return np.asarray(self._labels)

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per label (the label indices as text when the dataset names none)."""
        return tuple(str(i) for i in range(self.num_classes))

    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(T, C, H, W)`` of one clip under :attr:`frame_cfg`."""
        if self.frame_cfg is None:
            raise ValueError(f"{type(self).__name__} was opened without a frame_cfg")
        return self.frame_cfg.frame_shape(self.sensor)

    def frames(
        self, index: int, *, train: bool | None = None, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """The frames of sample ``index`` under :attr:`frame_cfg` (no transform).

        Args:
            index: sample index (``0 <= index < len(self)``).
            train: draw one random window start (``window`` mode) instead of
                ``frame_cfg.clips`` evenly spaced clips; default: ``split == "train"``.
            rng: generator of the window start; default: the dataset's own (seeded by ``seed``).

        Returns:
            ``(T, C, H, W)`` float32, or ``(clips, T, C, H, W)`` for several test clips.
        """
        cfg = self.frame_cfg
        if cfg is None:
            raise ValueError(
                f"{type(self).__name__} was opened without a frame_cfg: pass frame_cfg=FrameCfg(...)"
            )
        if self._frames is not None:
            return np.array(self._frames[index])  # integrated once, into the cache
        is_train = self.split == "train" if train is None else bool(train)
        return to_frames(
            self.events(index),
            self.sensor,
            cfg,
            train=is_train,
            rng=rng if rng is not None else self._rng,
        )

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """``(frames, label)`` with a ``frame_cfg``, else ``(events, label)``; then the transform."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        x: Any = self.frames(index) if self.frame_cfg is not None else self.events(index)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self._labels[index])
