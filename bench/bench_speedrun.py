"""Speedrun: nanoGPT's CPU recipe for Tiny Shakespeare against a faster one.

Everything runs in one process, so both recipes see the same machine:
  race      nanoGPT's recipe (lmbook.speedrun.NANOGPT, 2000 steps) and
            lmbook.speedrun.FAST, trained in turns (10 steps of one, 2 of the
            other), --repeats times. The ratio is FAST's training time until
            its validation loss is <= --target over the baseline's time for
            its 2000 steps; evaluation is not timed.
  ablation  nanoGPT's recipe shortened to --budget steps, then the same with one
            change at a time, then the changes stacked up to FAST.
  steps     seconds per training step of each batch size and optimizer,
            interleaved (bench/timing.py), wall-clock and CPU time.
  seeds     nanoGPT's recipe at --budget steps and FAST with seeds 1, 2, 3:
            how far the losses move with the seed alone.
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
import fcntl
import json
import os
import platform
import sys
import tempfile
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
PARTS = ("steps", "race", "ablation", "seeds")
OUT = ROOT / "bench" / "results" / "speedrun.json"


def ablations(budget: int) -> list[tuple[str, str, sr.Recipe]]:
    """(key, what changed, recipe): nanoGPT's recipe over `budget` steps, each
    change on its own, then the changes stacked up to FAST (at budget 800,
    the stacked rows end exactly at FAST: 400 steps of 24 = 800 of 12)."""
    base = sr.NANOGPT.replace(max_iters=budget)
    f = sr.FAST
    half = max(1, budget // 2)
    wsd = dict(schedule="wsd", min_lr=f.min_lr, decay_frac=f.decay_frac)
    lr = dict(lr=f.lr, min_lr=f.lr / 10)  # nanoGPT's min_lr = lr / 10
    return [
        ("base", f"nanoGPT's recipe, {budget} steps", base),
        ("lr", f"peak lr {f.lr:g} (not 1e-3)", base.replace(**lr)),
        ("wsd", "warmup-stable-decay to 0 (not cosine)", base.replace(**wsd)),
        (
            "warmup",
            f"warmup {f.warmup_iters} steps (not 100)",
            base.replace(warmup_iters=f.warmup_iters),
        ),
        (
            "batch",
            f"batch {f.batch_size}, {half} steps (same tokens)",
            base.replace(batch_size=f.batch_size, max_iters=half),
        ),
        (
            "plain_init",
            "c_proj init std 0.02 (not 0.02/sqrt(8))",
            base.replace(init="plain"),
        ),
        ("beta2", "betas (0.9, 0.95) (not 0.99)", base.replace(betas=(0.9, 0.95))),
        ("no_wd", "weight decay 0 (not 0.1)", base.replace(weight_decay=0.0)),
        ("untied", "untied embeddings", base.replace(tie_embeddings=False)),
        ("no_clip", "no gradient clipping", base.replace(grad_clip=0.0)),
        (
            "muon",
            f"Muon (lr {f.muon_lr:g}) for the block matrices",
            base.replace(optimizer="muon", muon_lr=f.muon_lr),
        ),
        # stacked: lr, then the schedule, then Muon, then the batch = FAST
        (
            "s_wsd",
            "lr + warmup-stable-decay",
            base.replace(lr=f.lr, warmup_iters=f.warmup_iters, **wsd),
        ),
        (
            "s_muon",
            "lr + warmup-stable-decay + Muon",
            f.replace(batch_size=sr.NANOGPT.batch_size, max_iters=budget),
        ),
        (
            "s_batch",
            f"lr + wsd + Muon + batch {f.batch_size}: FAST",
            f.replace(max_iters=half),
        ),
        # the ablation's one clear gain that FAST lacks, tried on FAST itself
        (
            "f_untied",
            "FAST + untied embeddings",
            f.replace(max_iters=half, tie_embeddings=False),
        ),
    ]


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
        nice=os.nice(0),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
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


def fast_eval_steps(n: int) -> list[int]:
    """Every 50 steps, then every 10 from the start of the decay (the target is
    reached there), so that the time to the target is read at most 10 late."""
    return sorted({*range(50, n + 1, 50), *range(max(1, n - 130), n + 1, 10), n})


def race(data, windows, results, args, save):
    """Baseline and FAST trained in turns, a few steps each, so that both see
    the same load; ratios of FAST's time to the target over the baseline's."""
    results["race"] = {"runs": [], "ratio_wall": [], "ratio_cpu": []}
    base, fast = sr.NANOGPT, sr.FAST
    if args.quick:  # a smoke test of the code paths, not a measurement
        base = base.replace(max_iters=20, warmup_iters=4)
        fast = fast.replace(max_iters=10, warmup_iters=4)
    n = base.max_iters  # nanoGPT's eval_interval, 250 of 2000 steps
    base_evals = sorted({*range(n // 8, n + 1, max(1, n // 8)), n})
    # turns of 10 baseline steps and 2 of FAST: both end at about the same time
    turn = {"nanogpt": 10, "fast": max(1, round(10 * fast.max_iters / n))}
    results["race"]["turn_steps"] = turn
    for rep in range(args.repeats):
        sessions = {
            "nanogpt": sr.Session(base, data, eval_steps=base_evals, windows=windows),
            "fast": sr.Session(
                fast, data, eval_steps=fast_eval_steps(fast.max_iters), windows=windows
            ),
        }
        order = list(sessions) if rep % 2 == 0 else list(reversed(sessions))
        while not all(s.done for s in sessions.values()):
            for name in order:
                if not sessions[name].done:
                    sessions[name].advance(turn[name])
        runs = {}
        for name in order:
            row = dict(name=name, repeat=rep, **record(sessions[name].run, args.target))
            results["race"]["runs"].append(row)
            runs[name] = row
            print(
                f"race {rep} {name}: val {row['final_val']:.4f} "
                f"wall {row['wall']:.0f} s cpu {row['cpu']:.0f} s "
                f"to target {row['time_to_target']}",
                flush=True,
            )
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
    """Every row of `ablations`, evaluated at 1/4, 1/2, 3/4 and the end."""
    keys = [k for k, _, _ in ablations(args.budget)]
    wanted = args.rows.split(",") if args.rows else keys
    unknown = set(wanted) - set(keys)
    if unknown:
        raise SystemExit(f"--rows: unknown {sorted(unknown)}; known: {keys}")
    old = {}  # with --rows, the other rows come from the results file
    if args.rows and args.out.exists():
        recorded = json.loads(args.out.read_text()).get("ablation", {})
        if recorded.get("budget") == args.budget:
            old = {row["key"]: row for row in recorded["rows"]}
    results["ablation"] = {"budget": args.budget, "rows": []}

    def keep_order(rows):
        return sorted(rows, key=lambda row: keys.index(row["key"]))

    for key, change, recipe in ablations(args.budget):
        if key not in wanted:
            continue
        if args.quick:
            recipe = recipe.replace(
                max_iters=min(recipe.max_iters, 8),
                warmup_iters=min(recipe.warmup_iters, 4),
            )
        n = recipe.max_iters
        evals = sorted({n // 4, n // 2, 3 * n // 4, n})  # final loss and shape
        run = sr.train(recipe, data, eval_steps=evals, windows=windows)
        row = dict(key=key, change=change, **record(run, args.target))
        old[key] = row
        results["ablation"]["rows"] = keep_order(old.values())
        print(
            f"ablation {key:10s} val {row['final_val']:.4f} cpu {row['cpu']:.0f} s "
            f"wall {row['wall']:.0f} s",
            flush=True,
        )
        save()


def seeds(data, windows, results, args, save):
    """How much the results move with the seed (initialisation and batches):
    nanoGPT's recipe at the ablation budget, and FAST, with seeds 1, 2, 3."""
    results["seeds"] = {"rows": []}
    base = sr.NANOGPT.replace(max_iters=args.budget)
    for name, recipe in (("base", base), ("fast", sr.FAST)):
        for seed in (1, 2, 3):
            r = recipe.replace(seed=seed)
            if args.quick:
                r = r.replace(max_iters=8, warmup_iters=4)
            n = r.max_iters  # FAST: its time to the target; base: the end
            evals = fast_eval_steps(n) if name == "fast" else [n]
            run = sr.train(r, data, eval_steps=evals, windows=windows)
            row = dict(name=name, seed=seed, **record(run, args.target))
            results["seeds"]["rows"].append(row)
            print(
                f"seeds {name} {seed}: val {row['final_val']:.4f} "
                f"to target {row['time_to_target']}",
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
    reps = 2 if args.quick else args.step_reps
    wall, cpu = measure(fns, reps=reps, device=torch.device("cpu"))
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
    parser.add_argument("--part", default="all", choices=["all", *PARTS])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="race repeats")
    parser.add_argument("--budget", type=int, default=800, help="ablation steps")
    parser.add_argument("--rows", default="", help="ablation rows to (re)run")
    parser.add_argument("--step-reps", type=int, default=20)
    parser.add_argument("--target", type=float, default=1.89)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="smoke test only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = sr.load_shakespeare_char()
    windows = sr.val_windows(data.val)
    if args.quick:
        windows = (windows[0][:24], windows[1][:24])
    results = {"machine": {}, "commands": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        """Merge this run's parts into the file; another part may run at once."""
        with open(Path(tempfile.gettempdir()) / "lmbook-speedrun.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = json.loads(args.out.read_text()) if args.out.exists() else {}
            merged.update(target=args.target, val_windows=list(windows[0].shape))
            merged["machine"] = {**merged.get("machine", {}), **results["machine"]}
            commands = merged.setdefault("commands", {})
            for part, command in results["commands"].items():
                done = commands.get(part, [])
                done = [done] if isinstance(done, str) else done
                if not (part == "ablation" and args.rows):  # a full rerun
                    done = []
                commands[part] = done + [command] * (command not in done)
            merged.update({k: v for k, v in results.items() if k in PARTS})
            atomic_write(args.out, json.dumps(merged, indent=1) + "\n")

    parts = list(PARTS) if args.part == "all" else [args.part]
    for part in parts:
        started = time.time()
        results["machine"][part] = machine()
        results["commands"][part] = "python " + " ".join(sys.argv)
        {
            "race": lambda: race(data, windows, results, args, save),
            "ablation": lambda: ablation(data, windows, results, args, save),
            "steps": lambda: steps(data, results, args, save),
            "seeds": lambda: seeds(data, windows, results, args, save),
        }[part]()
        results["machine"][part]["load_average_end"] = os.getloadavg()
        results["machine"][part]["hours"] = (time.time() - started) / 3600
        save()


if __name__ == "__main__":
    main()
