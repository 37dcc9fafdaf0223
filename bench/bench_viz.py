"""Benchmark AttentionView at GPT-2-small scale: 12 layers x 12 heads x 128 tokens.

Measures the HTML size (goal <= 2 MB) next to a naive JSON payload (weights rounded
to 3 decimals), the Python time to build the HTML, and in headless Debian chromium
the time from navigation start until the view is drawn (goal <= 1 s), plus the
time to redraw after choosing another layer, all heads, or hovering a token.
Medians of repeated runs.

    python bench/bench_viz.py [--quick] [--device cpu] [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from lmbook import get_device
from lmbook.viz import AttentionView

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZE_GOAL, RENDER_GOAL_MS = 2_000_000, 1000.0

REDRAW = """([sel, value]) => {
  const root = document.querySelector('.lmbook-attn');
  const s = root.querySelector(sel);
  const t0 = performance.now();
  s.value = value;
  s.dispatchEvent(new Event('change'));
  return performance.now() - t0;
}"""
HOVER = """(i) => {
  const b = document.querySelectorAll('.lmbook-attn-left .lmbook-attn-tok')[i];
  const t0 = performance.now();
  b.dispatchEvent(new MouseEvent('mouseenter'));
  const dt = performance.now() - t0;
  b.dispatchEvent(new MouseEvent('mouseleave'));
  return dt;
}"""


def attentions(n_layer, n_head, T, scale, device):
    """Softmax of scaled Gaussian scores: small `scale` is diffuse, large is peaky."""
    g = torch.Generator(device=device).manual_seed(0)
    return tuple(
        torch.softmax(
            scale * torch.randn(1, n_head, T, T, generator=g, device=device), -1
        )
        for _ in range(n_layer)
    )


def naive_size(view: AttentionView) -> int:
    nested = torch.round(view.weights.double() * 1000).div(1000).tolist()
    return len(json.dumps({"tokens": view.tokens, "weights": nested}))


def render_times(page_path: Path, runs: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(page_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{page_path.name}"
    out: dict[str, list[float]] = {
        k: [] for k in ("ready", "painted", "layer", "all heads", "hover")
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        for _ in range(runs):
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(".lmbook-attn[data-painted-ms]", timeout=30_000)
            root = page.locator(".lmbook-attn")
            out["ready"].append(float(root.get_attribute("data-ready-ms")))
            out["painted"].append(float(root.get_attribute("data-painted-ms")))
            out["layer"].append(
                page.evaluate(REDRAW, ["select.lmbook-attn-layer", "5"])
            )
            out["hover"].append(page.evaluate(HOVER, 64))
            out["all heads"].append(
                page.evaluate(REDRAW, ["select.lmbook-attn-head", "all"])
            )
            context.close()
        browser.close()
    server.shutdown()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(get_device()))
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = args.runs or (3 if args.quick else 7)
    n_layer, n_head, T = 12, 12, 128
    print(
        f"AttentionView, {n_layer} layers x {n_head} heads x {T} tokens, "
        f"device {args.device}, median of {runs} runs"
    )
    tokens = [f"tok{i}" for i in range(T)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, scale in (("diffuse", 1.0), ("peaky", 4.0)):
            att = attentions(n_layer, n_head, T, scale, torch.device(args.device))
            view = AttentionView(att, tokens)
            build = []
            for _ in range(runs):
                t0 = time.perf_counter()
                text = view._repr_html_()
                build.append(time.perf_counter() - t0)
            size, naive = len(text.encode()), naive_size(view)
            print(f"\n[{name} weights: softmax({scale:g} * N(0, 1) scores)]")
            print(
                f"  HTML size           {size / 1e6:6.2f} MB  "
                f"({size / SIZE_GOAL:.2f} x the 2 MB goal)"
            )
            print(
                f"  naive JSON (3 dp)   {naive / 1e6:6.2f} MB  "
                f"(ours is {naive / size:.1f} x smaller)"
            )
            print(f"  Python build        {statistics.median(build) * 1e3:6.0f} ms")
            if not CHROMIUM.exists():
                print(f"  {CHROMIUM} not found: browser timings skipped")
                continue
            page = view.save_html(Path(tmp) / f"{name}.html")
            t = render_times(page, runs)
            print(
                f"  drawn (nav -> data-ready)  {t['ready']:6.0f} ms  "
                f"({t['ready'] / RENDER_GOAL_MS:.2f} x the 1 s goal)"
            )
            print(f"  first paint after drawing  {t['painted']:6.0f} ms")
            print(f"  redraw: other layer        {t['layer']:6.1f} ms")
            print(f"  redraw: hover a token      {t['hover']:6.1f} ms")
            print(f"  redraw: all 12 heads       {t['all heads']:6.1f} ms")


if __name__ == "__main__":
    main()
