"""How the detectors' default thresholds are chosen from validation scores."""

from __future__ import annotations

import numpy as np


def threshold_for_precision(y: np.ndarray, p: np.ndarray, precision: float, balanced: bool = False) -> float:
    """The lowest threshold (best recall) whose precision on (y, p) is at least ``precision``.

    ``balanced``: precision as if both classes were equally common (true and false positive
    rates in place of counts), so that the threshold does not follow the data's class mix.

    Thresholds are shipped with three decimals, so the candidates are the scores rounded down and
    up to 0.001, and each is judged by the precision of what it flags itself (every score at or
    above it, ties included), not by that of the score it was rounded from.
    """
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    tp_from = np.append(np.cumsum((ys == 1)[::-1])[::-1], 0).astype(float)
    fp_from = np.append(np.cumsum((ys == 0)[::-1])[::-1], 0).astype(float)
    down, up = np.floor(p * 1000), np.ceil(p * 1000)
    down = np.where(down / 1000 > p, down - 1, down)  # p * 1000 may round across a step
    up = np.where((up - 1) / 1000 >= p, up - 1, up)
    candidates = np.unique(np.concatenate([down, up]) / 1000)
    at = np.searchsorted(ps, candidates, side="left")
    tp, fp = tp_from[at], fp_from[at]
    if balanced:
        tp, fp = tp / max(1, int((y == 1).sum())), fp / max(1, int((y == 0).sum()))
    ok = np.nonzero((tp > 0) & (tp / np.maximum(tp + fp, 1e-12) >= precision))[0]
    if not len(ok):
        return 1.0
    return float(candidates[ok[0]])
