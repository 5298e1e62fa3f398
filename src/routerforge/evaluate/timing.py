"""Routing overhead: per-prompt latency of embedding + prediction + policy, one prompt at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

PredictOne = Callable[[str], object]


def measure_latency(predict_one: PredictOne, texts: Sequence[str], *, warmup: int = 3) -> dict[str, float]:
    """Call ``predict_one`` on each text sequentially; returns wall-clock p50/p99/mean in milliseconds,
    plus the p50 of the process CPU time per call (``predict_cpu_ms_p50``: what the call costs in compute,
    which stays meaningful when other processes compete for the cores and inflate wall time).

    ``warmup`` calls (on the first texts) are made first and not counted.
    """
    for text in list(texts)[:warmup]:
        predict_one(text)
    times, cpu = [], []
    for text in texts:
        c0, t0 = time.process_time(), time.perf_counter()
        predict_one(text)
        times.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    arr = np.asarray(times) if times else np.array([np.nan])
    return {
        "predict_ms_p50": float(np.percentile(arr, 50)),
        "predict_ms_p99": float(np.percentile(arr, 99)),
        "predict_ms_mean": float(arr.mean()),
        "predict_cpu_ms_p50": float(np.percentile(np.asarray(cpu), 50)) if cpu else float("nan"),
        "latency_n": len(times),
    }


def sample_texts(texts: Sequence[str], n: int, *, seed: int = 0) -> list[str]:
    """Up to ``n`` texts drawn without replacement with a fixed seed."""
    if len(texts) <= n:
        return list(texts)
    idx = np.random.default_rng(seed).choice(len(texts), size=n, replace=False)
    return [texts[i] for i in sorted(idx)]
