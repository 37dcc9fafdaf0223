"""Speedrun: nanoGPT's CPU recipe for Tiny Shakespeare against a faster one.

Everything runs in one process, so both recipes see the same machine:
  race      nanoGPT's recipe (lmbook.speedrun.NANOGPT, 2000 steps) and
            lmbook.speedrun.FAST, alternating, --repeats times each. The ratio is
            FAST's training time until its validation loss is <= --target over
            the baseline's time for its 2000 steps; evaluation is not timed.
  ablation  nanoGPT's recipe shortened to --budget steps, then the same with one
            change at a time, then the changes stacked up to FAST.
  steps     seconds per training step of each batch size and optimizer,
            interleaved (bench/timing.py), wall-clock and CPU time.
Validation loss: all 1742 windows of 64 characters of nanoGPT's val split (the
last 10% of Tiny Shakespeare), i.e. 145 batches of 12. Results are written to
bench/results/speedrun.json after every run (atomically), for the chapter
chapters/04-building/training-faster.ipynb.

Usage, from the repository root:
  LMBOOK_DATA_DIR=/work/shared/data nohup nice -n 5 python bench/bench_speedrun.py \
      --part all > bench/logs/speedrun.log 2>&1 &
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

# Threads that wait for each other sleep instead of spinning: on a CPU shared
# with other jobs, spinning made 2-thread steps ten times slower here. Set
# before torch loads OpenMP; OMP_WAIT_POLICY=ACTIVE in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from timing import measure  # noqa: E402  bench/timing.py (run from bench/)

from lmbook import speedrun as sr  # noqa: E402
from lmbook.batching import TokenBatchSampler  # noqa: E402
from lmbook.fileio import atomic_write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "speedrun.json"


def ablations(budget: int) -> list[tuple[str, str, sr.Recipe]]:
    """(key, what changed, recipe): nanoGPT's recipe over `budget` steps, each
    change on its own, then the changes stacked up to FAST."""
    base = sr.NANOGPT.replace(max_iters=budget)
    fast = sr.FAST
    half = max(1, budget // 2)
    alone = [
        ("base", f"nanoGPT's recipe, {budget} steps", base),
        ("lr2", "peak lr 2e-3", base.replace(lr=2e-3, min_lr=2e-4)),
        ("lr4", "peak lr 4e-3", base.replace(lr=4e-3, min_lr=4e-4)),
        ("wsd", "warmup-stable-decay to 0", base.replace(schedule="wsd", min_lr=0.0)),
        ("warmup", "warmup 50 steps", base.replace(warmup_iters=50)),
        (
            "batch24",
            f"batch 24, {half} steps",
            base.replace(batch_size=24, max_iters=half),
        ),
        ("plain_init", "c_proj init 0.02 (not scaled)", base.replace(init="plain")),
        ("beta2", "betas (0.9, 0.95)", base.replace(betas=(0.9, 0.95))),
        ("no_wd", "weight decay 0", base.replace(weight_decay=0.0)),
        ("untied", "untied embeddings", base.replace(tie_embeddings=False)),
        ("no_clip", "no gradient clipping", base.replace(grad_clip=0.0)),
        (
            "muon",
            "Muon for the block matrices",
            base.replace(optimizer="muon", muon_lr=fast.muon_lr),
        ),
    ]
    stacked = [
        (
            "s_lr",
            "+ lr " + f"{fast.lr:g}",
            base.replace(lr=fast.lr, min_lr=0.1 * fast.lr),
        ),
        (
            "s_wsd",
            "+ warmup-stable-decay",
            base.replace(
                lr=fast.lr,
                min_lr=fast.min_lr,
                schedule="wsd",
                warmup_iters=fast.warmup_iters,
                decay_frac=fast.decay_frac,
            ),
        ),
        ("s_muon", "+ Muon (= FAST's recipe)", fast.replace(max_iters=budget)),
    ]
    return alone + stacked


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in f
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        threads=torch.get_num_threads(),
        python=platform.python_version(),
        torch=torch.__version__,
        capability=torch.backends.cpu.get_cpu_capability(),
        load_average=os.getloadavg(),
    )


def record(run: sr.Run, target: float) -> dict:
    hit = run.time_to(target)
    return dict(
        recipe=dataclasses.asdict(run.recipe),
        evals=[list(e) for e in run.evals],
        wall=run.wall,
        cpu=run.cpu,
        final_val=run.evals[-1][3] if run.evals else None,
        time_to_target=None if hit is None else list(hit),
        train_loss_last50=sum(run.losses[-50:]) / len(run.losses[-50:]),
        clipped_fraction=(
            sum(n > run.recipe.grad_clip for n in run.grad_norms) / len(run.losses)
            if run.recipe.grad_clip > 0
            else None
        ),
    )


def race(data, windows, results, args, save):
    """Baseline and FAST alternately; ratios of time-to-target over baseline."""
    results["race"] = {"runs": [], "ratio_wall": [], "ratio_cpu": []}
    base_evals = sorted({*range(250, 2001, 250)})  # nanoGPT's eval_interval
    fast_evals = sorted(
        {
            *range(args.fast_every, sr.FAST.max_iters + 1, args.fast_every),
            sr.FAST.max_iters,
        }
    )
    for rep in range(args.repeats):
        order = [("nanogpt", sr.NANOGPT, base_evals), ("fast", sr.FAST, fast_evals)]
        if rep % 2:
            order.reverse()
        runs = {}
        for name, recipe, evals in order:
            run = sr.train(recipe, data, eval_steps=evals, windows=windows)
            row = dict(name=name, repeat=rep, **record(run, args.target))
            results["race"]["runs"].append(row)
            runs[name] = row
            print(
                f"race {rep} {name}: val {row['final_val']:.4f} "
                f"wall {row['wall']:.0f} s cpu {row['cpu']:.0f} s "
                f"to target {row['time_to_target']}",
                flush=True,
            )
            save()
        hit = runs["fast"]["time_to_target"]
        if hit is not None:
            for i, clock in ((1, "wall"), (2, "cpu")):
                ratio = hit[i] / runs["nanogpt"][clock]
                results["race"][f"ratio_{clock}"].append(ratio)
            print(
                f"race {rep}: ratio wall {results['race']['ratio_wall'][-1]:.3f} "
                f"cpu {results['race']['ratio_cpu'][-1]:.3f}",
                flush=True,
            )
        save()


def ablation(data, windows, results, args, save):
    """Every row of `ablations` at --budget steps, evaluated every --every."""
    results["ablation"] = {"budget": args.budget, "rows": []}
    for key, change, recipe in ablations(args.budget):
        n = recipe.max_iters
        evals = sorted({*range(args.every, n + 1, args.every), n})
        run = sr.train(recipe, data, eval_steps=evals, windows=windows)
        row = dict(key=key, change=change, **record(run, args.target))
        results["ablation"]["rows"].append(row)
        print(
            f"ablation {key:10s} val {row['final_val']:.4f} cpu {row['cpu']:.0f} s "
            f"wall {row['wall']:.0f} s",
            flush=True,
        )
        save()


def steps(data, results, args, save):
    """Median seconds per training step, configurations interleaved."""
    configs = {
        "adamw b12": sr.NANOGPT,
        "adamw fused b12": sr.NANOGPT.replace(fused=True),
        "muon b12": sr.FAST.replace(batch_size=12),
        "adamw b24": sr.NANOGPT.replace(batch_size=24),
        "muon b24": sr.FAST.replace(batch_size=24),
        "adamw b48": sr.NANOGPT.replace(batch_size=48),
    }
    fns = {}
    for name, recipe in configs.items():
        # a short warm run builds the model and optimizer state; then time steps
        state = {"run": sr.train(recipe, data, steps=2)}
        fns[name] = _stepper(recipe, data, state)
    wall, cpu = measure(fns, reps=args.step_reps, device=torch.device("cpu"))
    results["steps"] = {
        name: dict(batch_size=configs[name].batch_size, wall=wall[name], cpu=cpu[name])
        for name in configs
    }
    for name in configs:
        print(
            f"step {name:16s} wall {wall[name] * 1e3:7.1f} ms "
            f"cpu {cpu[name] * 1e3:7.1f} ms",
            flush=True,
        )
    save()


def _stepper(recipe, data, state):
    """One training step of `recipe` per call, on a model kept between calls."""
    model = state["run"].model
    opts = sr.make_optimizers(model, recipe)
    sampler = TokenBatchSampler(data.train, sr.MODEL["block_size"], seed=0)

    def step():
        x, y = sampler(recipe.batch_size)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        for opt in opts:
            opt.step()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", default="all", choices=["all", "race", "ablation", "steps"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="race repeats")
    parser.add_argument("--budget", type=int, default=1000, help="ablation steps")
    parser.add_argument("--every", type=int, default=100, help="ablation evals")
    parser.add_argument("--fast-every", type=int, default=50, help="FAST's evals")
    parser.add_argument("--step-reps", type=int, default=20)
    parser.add_argument("--target", type=float, default=1.89)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = sr.load_shakespeare_char()
    windows = sr.val_windows(data.val)
    results = {}
    if args.out.exists():  # keep the parts this invocation does not rerun
        results = json.loads(args.out.read_text())
    results["target"] = args.target
    results["val_windows"] = list(windows[0].shape)
    results.setdefault("commands", {})
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        atomic_write(args.out, json.dumps(results, indent=1) + "\n")

    parts = ["steps", "race", "ablation"] if args.part == "all" else [args.part]
    for part in parts:
        started = time.time()
        results.setdefault("machine", {})[part] = machine()
        results["commands"][part] = "python " + " ".join(sys.argv)
        {
            "race": lambda: race(data, windows, results, args, save),
            "ablation": lambda: ablation(data, windows, results, args, save),
            "steps": lambda: steps(data, results, args, save),
        }[part]()
        results["machine"][part]["load_average_end"] = os.getloadavg()
        results["machine"][part]["hours"] = (time.time() - started) / 3600
        save()


if __name__ == "__main__":
    main()
