"""How the detectors' default thresholds are chosen from validation scores."""

from __future__ import annotations

import numpy as np


def threshold_for_precision(y: np.ndarray, p: np.ndarray, precision: float, balanced: bool = False) -> float:
    """The lowest threshold (best recall) whose precision on (y, p) is at least ``precision``.

    ``balanced``: precision as if both classes were equally common (true and false positive
    rates in place of counts), so that the threshold does not follow the data's class mix.
    """
    order = np.argsort(-p)
    tp = np.cumsum(y[order] == 1).astype(float)
    fp = np.cumsum(y[order] == 0).astype(float)
    if balanced:
        tp, fp = tp / max(1, int((y == 1).sum())), fp / max(1, int((y == 0).sum()))
    prec = tp / np.maximum(tp + fp, 1e-12)
    ok = np.nonzero(prec >= precision)[0]
    if not len(ok):
        return 1.0
    return float(np.ceil(p[order][ok[-1]] * 1000) / 1000)
