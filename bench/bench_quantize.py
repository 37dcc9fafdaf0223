"""Latency of the house model shakespeare-bpe in the formats of
chapters/05-practice/making-models-small.ipynb, measured side by side in one
process: eager float32 PyTorch, lmbook.quantize's weight-only int8 and int4
(groups of 32, dequantized on every call), and ONNX Runtime in float32, with
dynamic int8 quantization (quantize_dynamic) and with symmetric int4 weights in
blocks of 32 (MatMulNBitsQuantizer).

Two shapes: a 64-token prompt (batch 1) and one token (batch 1, no cache: the
cost of reading every weight once). Each figure is the median over --rounds
interleaved rounds of the per-call time (best of 5 x --number calls per round),
divided by float32's in the same round. Results go to
bench/results/quantize.json (atomically).

Usage, from the repository root:
  LMBOOK_DATA_DIR=/work/shared/data python bench/bench_quantize.py \\
      > bench/logs/quantize.log 2>&1
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import tempfile
import timeit
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from onnxruntime.quantization.matmul_nbits_quantizer import (  # noqa: E402
    MatMulNBitsQuantizer,
)
from transformers import AutoModelForCausalLM  # noqa: E402

from lmbook import house_model_path  # noqa: E402
from lmbook.fileio import atomic_write  # noqa: E402
from lmbook.quantize import quantize_model  # noqa: E402

logging.getLogger().setLevel(logging.WARNING)  # the int4 quantizer sets INFO
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "quantize.json"
MODEL = str(house_model_path("shakespeare-bpe"))


class LogitsOnly(torch.nn.Module):
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        return self.lm(input_ids=input_ids, use_cache=False).logits


def torch_call(model, ids):
    def call():
        with torch.no_grad():
            model(ids)

    return call


def ort_call(session, ids):
    feed = {"input_ids": ids.numpy()}
    return lambda: session.run(None, feed)


def build(threads: int, tmp: str) -> dict:
    """name -> function(ids) -> a no-argument callable running one forward."""
    model = AutoModelForCausalLM.from_pretrained(MODEL).eval()
    models = {
        "fp32": model,
        "int8 ours g32": quantize_model(copy.deepcopy(model), 8, 32),
        "int4 ours g32": quantize_model(copy.deepcopy(model), 4, 32),
    }
    fp32_path, int8_path = f"{tmp}/model.onnx", f"{tmp}/model-int8.onnx"
    int4_path = f"{tmp}/model-int4.onnx"
    dims = {
        "input_ids": {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", max=128)}
    }
    torch.onnx.export(
        LogitsOnly(model).eval(),
        (torch.zeros(2, 64, dtype=torch.long),),
        fp32_path,
        dynamo=True,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes=dims,
        external_data=False,
        verbose=False,
    )
    logging.disable(logging.WARNING)  # its advice on graph pre-processing
    quantize_dynamic(
        fp32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True
    )
    logging.disable(logging.NOTSET)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(fp32_path), bits=4, block_size=32, is_symmetric=True
    )
    quantizer.process()
    quantizer.model.save_model_to_file(int4_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    sessions = {
        name: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for name, path in (
            ("onnxruntime fp32", fp32_path),
            ("onnxruntime int8", int8_path),
            ("onnxruntime int4 g32", int4_path),
        )
    }
    calls = {name: (lambda ids, m=m: torch_call(m, ids)) for name, m in models.items()}
    calls |= {name: (lambda ids, s=s: ort_call(s, ids)) for name, s in sessions.items()}
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
        f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    shapes = {
        "prompt 64": torch.arange(64)[None] % 1024,
        "one token": torch.tensor([[7]]),
    }
    results = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        calls = build(args.threads, tmp)
        for shape, ids in shapes.items():
            fns = {name: make(ids) for name, make in calls.items()}
            for fn in fns.values():
                fn()  # warm-up
            ms = {name: [] for name in fns}
            ratios = {name: [] for name in fns}
            for _ in range(args.rounds):  # interleaved: load changes hit all alike
                this_round = {}
                for name, fn in fns.items():
                    runs = timeit.repeat(fn, number=args.number, repeat=5)
                    this_round[name] = 1e3 * min(runs) / args.number
                for name, t in this_round.items():
                    ms[name].append(t)
                    ratios[name].append(t / this_round["fp32"])
            results[shape] = {}
            print(f"\n{shape}: median ms per call, and ÷ fp32 (min-max over rounds)")
            for name in fns:
                r = ratios[name]
                med = statistics.median(ms[name])
                results[shape][name] = {"ms": med, "ratio": statistics.median(r)}
                print(
                    f"  {name:22s} {med:7.2f} ms  {statistics.median(r):5.2f} "
                    f"({min(r):.2f}-{max(r):.2f})"
                )
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    atomic_write(OUT, json.dumps(results, indent=1) + "\n", name="the results file")
    print("written", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
