"""Side-by-side timing shared by the benchmark scripts in this folder."""

from __future__ import annotations

import statistics
import time

import torch


def measure(
    fns: dict, reps: int, device: torch.device, warmup: int = 2
) -> tuple[dict, dict]:
    """Median wall-clock and CPU seconds per call of each fn.

    The fns run in rotating order each rep, so load from other processes falls on
    all of them alike; CPU time (this process, all threads) is the steadier figure
    on a busy CPU, wall-clock the one that counts on an otherwise idle machine.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():  # warm up
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    names = list(fns)
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def report(
    label: str,
    wall: dict,
    cpu: dict,
    device: torch.device,
    ratios: list[tuple[str, str]],
) -> None:
    """Print one line per clock: medians in ms, then each ratio ``a/b``.

    CPU time is skipped on a GPU, where it says nothing about kernel time.
    """
    for clock, t in (("wall", wall), ("cpu", cpu)):
        if clock == "cpu" and device.type != "cpu":
            continue
        ms = " ".join(f"{k}={v * 1e3:.1f}" for k, v in t.items())
        rs = " ".join(f"{a}/{b}={t[a] / t[b]:.3f}" for a, b in ratios)
        print(f"{label} {clock:4} {ms} (ms) | {rs}")
