"""The PCA baseline for session anomalies (Xu et al., SOSP 2009, as implemented in Loghub's loglizer).

Event-count vectors per session (plain counts, as the issue's "plain PCA"; TF-IDF weighting would give the events
present in every training session weight 0, blinding it to sessions that stop early), centred on the training
sessions; the normal subspace is
spanned by the principal components that explain 95% of the variance; a session's squared prediction error
(SPE, its squared distance to that subspace) above the Q-statistic (Jackson & Mudholkar, alpha = 0.001) is an
anomaly. Fitted on normal sessions only, like Vigil's model in the same benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_Z_ALPHA_0_001 = 3.0902  # the standard normal's 99.9% quantile


class PcaDetector:
    def __init__(self, *, variance: float = 0.95) -> None:
        self.variance = variance
        self.vocab: list[str] = []
        self.mean = np.zeros(0)
        self.residual_projection = np.zeros((0, 0))
        self.threshold = math.inf

    def _counts(self, sessions: Sequence[Sequence[str]]) -> np.ndarray:
        index = {e: i for i, e in enumerate(self.vocab)}
        x = np.zeros((len(sessions), len(self.vocab)))
        for row, events in enumerate(sessions):
            for event in events:
                col = index.get(event)
                if col is not None:
                    x[row, col] += 1
        return x

    def fit(self, sessions: Sequence[Sequence[str]]) -> PcaDetector:
        self.vocab = sorted({e for events in sessions for e in events})
        x = self._counts(sessions)
        n = max(1, x.shape[0])
        xt = x
        self.mean = xt.mean(axis=0)
        xc = xt - self.mean
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        eig = s**2 / max(1, n - 1)
        total = eig.sum()
        k = int(np.searchsorted(np.cumsum(eig) / total, self.variance) + 1) if total > 0 else 0
        p = vt[:k].T
        self.residual_projection = np.eye(len(self.vocab)) - p @ p.T
        rest = eig[k:]
        phi = [float((rest**i).sum()) for i in (1, 2, 3)]
        if phi[0] <= 0:
            self.threshold = 1e-9
            return self
        h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
        q = phi[0] * (
            _Z_ALPHA_0_001 * math.sqrt(2.0 * phi[1] * h0**2) / phi[0] + 1.0 + phi[1] * h0 * (h0 - 1.0) / phi[0] ** 2
        ) ** (1.0 / h0)
        self.threshold = q
        return self

    def spe(self, sessions: Sequence[Sequence[str]]) -> np.ndarray:
        xc = self._counts(sessions) - self.mean
        residual = xc @ self.residual_projection
        return np.asarray((residual**2).sum(axis=1))

    def predict(self, sessions: Sequence[Sequence[str]]) -> list[bool]:
        return [bool(v > self.threshold) for v in self.spe(sessions)]
