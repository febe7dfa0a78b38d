"""Long context: peak memory and time of attention against the sequence length.

Self-attention, batch 1, grouped-query (8 query heads, 2 key/value heads),
head dim 64, float32, at T = 1k, 2k, ..., 64k; masks from positions: causal,
and causal with a sliding window of 4096. Three implementations:

- ``blockwise``: ``fp.dot_product_attention(..., causal=True,
  implementation="blockwise")`` (default block size);
- ``dense``: the same call with ``implementation="xla"``, which builds the
  ``[q, k]`` mask and logits;
- ``jax``: ``jax.nn.dot_product_attention(..., is_causal=True,
  local_window_size=(w - 1, 0), implementation="xla")``.

Forward, and forward + backward (the gradient of the outputs' sum with respect
to q, k and v). Every measurement runs in a fresh process (this script, called
with ``--child``): its peak RSS is its own ``ru_maxrss`` (``os.wait4``; this
process imports no jax, whose pages a child's count would include), and its
time the median of a few calls of the compiled program (compiled ahead of
time, then one warm-up call below T = 32k; fewer timed calls at large T).
Before each run, a memory model predicts its peak RSS (base + slope * T^2 for
dense and jax, base + slope * T for blockwise, fitted on the runs measured so
far at smaller T); runs predicted above ``--max-gb`` (12) are skipped with the
prediction printed.

Beside each time: the achieved FLOP/s, counting only the matmul FLOPs the mask
keeps (forward ``4 * pairs * head_dim * heads``, with ``pairs`` the attended
(query, key) pairs; forward + backward 3.5x that, FlashAttention-2's
convention: the backward pass's five matmuls, the recomputed ``q k^T``
included, are 2.5x the forward's two), as a fraction of two plain
``jnp.matmul`` rates measured in a process of their own just before the runs
of each T (the practical peak): the logits' product at the attention's sizes,
``[heads, T, 64] @ [heads, 64, T]`` (T capped at 4096), which on a CPU is
bound by writing its ``[heads, T, T]`` output; and the two products of one
block of 512 keys (``[kv, 512 * groups, 64] @ [kv, 64, 512]`` and back), which
stay in cache: the compute-bound peak.

Then the ring: ``fp.ring_attention`` inside ``jax.shard_map`` on 1, 2 and 4
fake CPU devices (a child process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``) at one length, causal,
tokens in ``load_balanced_order``: the per-device peak memory of the compiled
program (``memory_analysis()``, which is per device; RSS would be per
process), forward and forward + backward.

    python -m benchmarks.long_context [--quick] [--out PATH]

``--quick`` stops at T = 4096, times 3 calls instead of 5 and runs the ring at
a small length, to check the script in a few minutes. Results are written as
JSON to ``--out`` (default ``benchmarks/results/long_context.json``) after
every run, so an interrupted run keeps what it measured; ``docs/figures.py``
draws the benchmarks page's figure from that file.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HEADS, KV_HEADS, HEAD_DIM = 8, 2, 64
LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_LENGTHS = (1024, 2048, 4096)
IMPLEMENTATIONS = ("blockwise", "dense", "jax")
PASSES = ("fwd", "fwd+bwd")
# FlashAttention-2's count: the backward pass is 2.5x the forward's FLOPs.
FWD_BWD_FLOPS = 3.5
# The memory model before two runs of a kind are measured: bytes of base RSS,
# and bytes per T^2 (dense, jax) or per T (blockwise).
PRIOR_BASE = 0.4e9
PRIOR_SLOPE = {
    ("dense", "fwd"): 110.0,
    ("dense", "fwd+bwd"): 220.0,
    ("jax", "fwd"): 110.0,
    ("jax", "fwd+bwd"): 220.0,
    ("blockwise", "fwd"): 20e3,
    ("blockwise", "fwd+bwd"): 40e3,
}
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "long_context.json"


# --- what a run computes ------------------------------------------------------


def attended_pairs(length: int, window: int | None) -> int:
    """(query, key) pairs a causal mask (with an optional window) keeps."""
    if window is None or window >= length:
        return length * (length + 1) // 2
    return window * (window + 1) // 2 + (length - window) * window


def attention_flops(length: int, window: int | None, passes: str) -> float:
    forward = 4.0 * attended_pairs(length, window) * HEAD_DIM * HEADS
    return forward if passes == "fwd" else FWD_BWD_FLOPS * forward


def _attention(implementation: str, window: int | None):
    import jax

    import flax_posenc as fp

    if implementation == "jax":

        def attend(q, k, v):
            return jax.nn.dot_product_attention(
                q,
                k,
                v,
                is_causal=True,
                local_window_size=None if window is None else (window - 1, 0),
                implementation="xla",
            )

        return attend
    name = {"blockwise": "blockwise", "dense": "xla"}[implementation]

    def attend(q, k, v):
        return fp.dot_product_attention(
            q, k, v, causal=True, sliding_window=window, implementation=name
        )

    return attend


def _program(implementation: str, window: int | None, passes: str):
    import jax

    attend = _attention(implementation, window)
    if passes == "fwd":
        return jax.jit(attend)
    return jax.jit(jax.grad(lambda q, k, v: attend(q, k, v).sum(), argnums=(0, 1, 2)))


def _inputs(length: int):
    import jax

    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (1, length, HEADS, HEAD_DIM))
    k = jax.random.normal(keys[1], (1, length, KV_HEADS, HEAD_DIM))
    v = jax.random.normal(keys[2], (1, length, KV_HEADS, HEAD_DIM))
    return q, k, v


def _seconds(fn, args) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def _timed(compiled, args, *, warm_up: bool, repeats: int, budget_s: float):
    """Median seconds of up to ``repeats`` calls; stops once ``budget_s`` is spent."""
    if warm_up:
        _seconds(compiled, args)
    times = []
    while len(times) < repeats and (not times or sum(times) < budget_s):
        times.append(_seconds(compiled, args))
    return float(np.median(times)), times


def child(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    length, window = args.length, args.window_size
    inputs = _inputs(length)
    program = _program(args.implementation, window, args.passes)
    start = time.perf_counter()
    compiled = program.lower(*inputs).compile()
    compile_s = time.perf_counter() - start
    stats = compiled.memory_analysis()
    median, times = _timed(
        compiled,
        inputs,
        warm_up=length < 32768,
        repeats=args.repeats,
        budget_s=args.budget_s,
    )
    print(
        json.dumps(
            {
                "seconds": median,
                "times": times,
                "compile_seconds": compile_s,
                "temp_bytes": int(stats.temp_size_in_bytes),
                "vm_hwm_bytes": _vm_hwm(),
            }
        )
    )


def _vm_hwm() -> int:
    """This process's own peak RSS in bytes (VmHWM: not the parent's pages)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _matmul_rate(shapes: list[tuple[tuple, tuple]], repeats: int) -> dict:
    """FLOP/s of ``jnp.matmul`` over these (a, b) shapes, run one after the other."""
    import jax
    import jax.numpy as jnp

    matmul = jax.jit(jnp.matmul)
    flops, seconds = 0.0, 0.0
    for a_shape, b_shape in shapes:
        keys = jax.random.split(jax.random.key(1), 2)
        a = jax.random.normal(keys[0], a_shape)
        b = jax.random.normal(keys[1], b_shape)
        median, _ = _timed(matmul, (a, b), warm_up=True, repeats=repeats, budget_s=5.0)
        flops += 2.0 * np.prod(a_shape) * b_shape[-1]
        seconds += median
    return {"shapes": shapes, "seconds": seconds, "flops_per_s": flops / seconds}


def matmul_child(args) -> None:
    """The practical peaks at this T (one JSON line).

    ``full``: ``[heads, T, d] @ [heads, d, T]``, the logits' product at the
    attention's own sizes (T capped at 4096: the output is ``[heads, T, T]``);
    on a CPU it is bound by writing that output. ``block``: the two products
    of one block of the default size 512 with the query groups folded into
    the rows, ``[kv, 512 * g, d] @ [kv, d, 512]`` and ``[kv, 512 * g, 512] @
    [kv, 512, d]``, which stay in cache: the compute-bound peak.
    """
    size, rows = min(args.length, 4096), 512 * (HEADS // KV_HEADS)
    full = _matmul_rate(
        [((HEADS, size, HEAD_DIM), (HEADS, HEAD_DIM, size))], args.repeats
    )
    block = _matmul_rate(
        [
            ((KV_HEADS, rows, HEAD_DIM), (KV_HEADS, HEAD_DIM, 512)),
            ((KV_HEADS, rows, 512), (KV_HEADS, 512, HEAD_DIM)),
        ],
        args.repeats,
    )
    print(json.dumps({"T": args.length, "full": full, "block": block}))


def check_child(args) -> None:
    """The machine, and that the three implementations agree (one JSON line)."""
    import jax.numpy as jnp

    from benchmarks import _timing

    length, small = 640, min(args.window_size, 200)
    q, k, v = _inputs(length)
    outs = [_attention(name, small)(q, k, v) for name in IMPLEMENTATIONS]
    outs += [_attention(name, None)(q, k, v) for name in IMPLEMENTATIONS]
    diff = max(
        float(jnp.abs(outs[i] - outs[j]).max())
        for i, j in ((0, 1), (0, 2), (3, 4), (3, 5))
    )
    print(json.dumps({"machine": _timing.machine(), "max_abs_diff": diff}))


# --- the memory model ---------------------------------------------------------


def _size_term(implementation: str, length: int) -> float:
    return float(length) if implementation == "blockwise" else float(length) ** 2


class MemoryModel:
    """Predicted peak RSS: base + slope * T^2 (dense, jax) or * T (blockwise).

    Fitted by least squares on the runs measured so far of the same
    implementation and pass (any mask), a prior until there are two.
    """

    def __init__(self):
        self.seen: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def add(self, implementation: str, passes: str, length: int, rss: float):
        self.seen.setdefault((implementation, passes), []).append((length, rss))

    def predict(self, implementation: str, passes: str, length: int) -> float:
        key = (implementation, passes)
        points = self.seen.get(key, [])
        lengths = sorted({t for t, _ in points})
        if len(lengths) < 2:
            base = max([rss for _, rss in points], default=PRIOR_BASE)
            slope = PRIOR_SLOPE[key]
            if points:  # one length: base from the prior slope through it
                t, rss = max(points)
                base = max(rss - slope * _size_term(implementation, t), PRIOR_BASE)
            return base + slope * _size_term(implementation, length)
        x = np.array([_size_term(implementation, t) for t, _ in points])
        y = np.array([rss for _, rss in points])
        slope, base = np.polyfit(x, y, 1)
        # Noise at small T must not predict less than what was measured.
        slope = max(float(slope), 0.0)
        base = max(float(base), float(y.min()) - slope * float(x.min()))
        return base + slope * _size_term(implementation, length)


# --- the parent: runs, table, targets -----------------------------------------


def run_child(extra: list[str], env: dict | None = None) -> tuple[dict | None, dict]:
    """Runs this script with ``--child=...`` in a fresh process: (its JSON, info).

    The child's own resource usage (``os.wait4``) gives its peak RSS, also
    when it was killed.
    """
    command = [sys.executable, "-m", "benchmarks.long_context", *extra]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        stdout = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        errors = stderr.read()
    info = {"returncode": process.returncode, "rss_bytes": usage.ru_maxrss * 1024}
    if process.returncode != 0:
        info["stderr"] = errors[-2000:]
        return None, info
    found = json.loads(stdout.strip().splitlines()[-1])
    if isinstance(found, dict):
        found["rss_bytes"] = info["rss_bytes"]
    return found, info


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f}"


def _write(path: pathlib.Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def _find(runs, **where):
    for run in runs:
        if all(run.get(key) == value for key, value in where.items()):
            return run
    return None


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met or None when not measured)."""
    runs, window = results["runs"], results["window"]

    def measured(**where):
        run = _find(runs, **where)
        return run if run is not None and "seconds" in run else None

    rows = []
    run = measured(implementation="blockwise", mask="causal", passes="fwd+bwd", T=32768)
    rows.append(
        (
            "T=32768 causal fwd+bwd blockwise peak RSS <= 1.5 GB",
            "not run" if run is None else f"{_gb(run['rss_bytes'])} GB",
            None if run is None else run["rss_bytes"] <= 1.5e9,
        )
    )
    for passes, limit, label in (
        ("fwd+bwd", 1.2, "T=2048 causal blockwise fwd+bwd <= 1.2x dense time"),
    ):
        ours = measured(
            implementation="blockwise", mask="causal", passes=passes, T=2048
        )
        dense = measured(implementation="dense", mask="causal", passes=passes, T=2048)
        if ours and dense:
            ratio = ours["seconds"] / dense["seconds"]
            rows.append((label, f"{ratio:.2f}x", ratio <= limit))
        else:
            rows.append((label, "not run", None))
    for passes in PASSES:
        label = f"T=8192 causal {passes}: blockwise >= 1.5x faster than dense"
        ours = measured(
            implementation="blockwise", mask="causal", passes=passes, T=8192
        )
        dense = measured(implementation="dense", mask="causal", passes=passes, T=8192)
        if ours and dense:
            speedup = dense["seconds"] / ours["seconds"]
            rows.append((label, f"{speedup:.2f}x faster", speedup >= 1.5))
        else:
            rows.append((label, "not run (dense skipped or not reached)", None))
    for passes in PASSES:
        label = (
            f"T=32768 blockwise {passes}: window {window} <= 0.3x the time of "
            "full causal"
        )
        full = measured(
            implementation="blockwise", mask="causal", passes=passes, T=32768
        )
        local = measured(
            implementation="blockwise", mask="window", passes=passes, T=32768
        )
        if full and local:
            ratio = local["seconds"] / full["seconds"]
            rows.append((label, f"{ratio:.2f}x", ratio <= 0.3))
        else:
            rows.append((label, "not run", None))
    run = measured(implementation="blockwise", mask="causal", passes="fwd", T=8192)
    for key, what in (
        ("of_matmul", "jnp.matmul at the logits' size"),
        ("of_block_matmul", "jnp.matmul at one block's size"),
    ):
        rows.append(
            (
                f"T=8192 causal blockwise fwd >= 0.5x the FLOP/s of {what}",
                "not run" if run is None else f"{run[key]:.2f}x",
                None if run is None else run[key] >= 0.5,
            )
        )
    ring = results.get("ring") or []
    for passes in PASSES:
        rows_ = [r for r in ring if r["passes"] == passes]
        label = f"ring {passes}: per-device peak falls with the device count"
        if len(rows_) >= 2:
            peaks = [r["peak_bytes"] for r in sorted(rows_, key=lambda r: r["devices"])]
            text = " > ".join(f"{_gb(p)}" for p in peaks) + " GB"
            rows.append((label, text, all(a > b for a, b in itertools.pairwise(peaks))))
        else:
            rows.append((label, "not run", None))
    return rows


# --- the ring (its own child process with 4 CPU devices) ----------------------


def ring_child(args) -> None:
    """Per-device compiled memory of the ring on 1, 2 and 4 devices: JSON lines."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import flax_posenc as fp

    length = args.length
    rows = []
    seq = P(None, "context")
    for devices in (1, 2, 4):
        mesh = jax.make_mesh(
            (devices,),
            ("context",),
            axis_types=(jax.sharding.AxisType.Auto,),
            devices=jax.devices()[:devices],
        )
        positions = fp.load_balanced_order(length, devices)[None]

        def ring(q, k, v, mesh=mesh, positions=positions):
            local = jax.shard_map(
                lambda q, k, v, p: fp.ring_attention(
                    q,
                    k,
                    v,
                    axis_name="context",
                    q_positions=p,
                    k_positions=p,
                    causal=True,
                ),
                mesh=mesh,
                in_specs=(seq, seq, seq, seq),
                out_specs=seq,
            )
            return local(q, k, v, positions)

        sharding = NamedSharding(mesh, seq)
        shapes = [
            jax.ShapeDtypeStruct(
                (1, length, heads, HEAD_DIM), "float32", sharding=sharding
            )
            for heads in (HEADS, KV_HEADS, KV_HEADS)
        ]
        for passes in PASSES:
            if passes == "fwd":
                program = jax.jit(ring)
            else:
                program = jax.jit(
                    jax.grad(lambda q, k, v: ring(q, k, v).sum(), argnums=(0, 1, 2))
                )
            stats = program.lower(*shapes).compile().memory_analysis()
            peak = (
                stats.argument_size_in_bytes
                + stats.output_size_in_bytes
                + stats.temp_size_in_bytes
                - stats.alias_size_in_bytes
            )
            rows.append(
                {
                    "devices": devices,
                    "passes": passes,
                    "T": length,
                    "peak_bytes": int(peak),
                    "temp_bytes": int(stats.temp_size_in_bytes),
                    "argument_bytes": int(stats.argument_size_in_bytes),
                }
            )
    print(json.dumps(rows))


def _measure(row, extra, predicted, peaks, window) -> str:
    """Runs one measurement's child; fills ``row``; the table line's tail."""
    found, info = run_child(extra)
    if found is None:
        row["failed"] = info
        return (
            f"failed (exit {info['returncode']}, peak RSS {_gb(info['rss_bytes'])} "
            f"GB, predicted {_gb(predicted)} GB): {info.get('stderr', '')[-300:]}"
        )
    row.update(found)
    flops = attention_flops(row["T"], window, row["passes"])
    row["flops"] = flops
    row["flops_per_s"] = flops / found["seconds"]
    row["of_matmul"] = row["flops_per_s"] / peaks["full"]["flops_per_s"]
    row["of_block_matmul"] = row["flops_per_s"] / peaks["block"]["flops_per_s"]
    return (
        f"{_gb(found['rss_bytes']):>8s} {found['seconds'] * 1e3:10.1f} "
        f"{row['flops_per_s'] / 1e9:8.1f} {row['of_matmul']:6.2f} "
        f"{row['of_block_matmul']:6.2f}   (predicted {_gb(predicted)} GB, "
        f"{len(found['times'])} timed, compile {found['compile_seconds']:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T up to 4096")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--max-gb", type=float, default=12.0)
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls (5; --quick: 3)"
    )
    parser.add_argument("--budget-s", type=float, default=20.0)
    parser.add_argument("--ring-length", type=int, default=None)
    parser.add_argument(
        "--only", default=None, help="comma-separated implementations to run"
    )
    # A child's arguments (this script runs itself, one process per measurement).
    parser.add_argument(
        "--child",
        choices=("attention", "matmul", "check", "ring"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--implementation", help=argparse.SUPPRESS)
    parser.add_argument("--passes", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        children = {
            "attention": child,
            "matmul": matmul_child,
            "check": check_child,
            "ring": ring_child,
        }
        children[args.child](args)
        return

    # This process never imports jax: a child's peak RSS (ru_maxrss) counts
    # the pages of the process it was started from.
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    ring_length = args.ring_length or (1024 if args.quick else 16384)
    implementations = (
        IMPLEMENTATIONS if args.only is None else tuple(args.only.split(","))
    )
    masks = (("causal", None), ("window", args.window))
    started = time.perf_counter()
    check, info = run_child(["--child=check", f"--window-size={args.window}"])
    if check is None:
        raise SystemExit(f"the agreement check failed: {info.get('stderr')}")
    results = {
        "machine": check["machine"],
        "date": datetime.date.today().isoformat(),
        "command": "python -m benchmarks.long_context"
        + (" --quick" if args.quick else ""),
        "heads": HEADS,
        "kv_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "window": args.window,
        "max_gb": args.max_gb,
        "flops_convention": (
            "forward 4 * pairs * head_dim * heads, pairs = attended (query, key) "
            f"pairs; forward+backward {FWD_BWD_FLOPS}x forward (FlashAttention-2)"
        ),
        "agreement_max_abs_diff": check["max_abs_diff"],
        "matmul": [],
        "runs": [],
        "ring": None,
    }
    print(f"machine: {results['machine']}")
    print(
        f"batch 1, {HEADS} query heads, {KV_HEADS} kv heads, head dim {HEAD_DIM}, "
        f"float32; masks: causal, causal + window {args.window}"
    )
    print(f"FLOPs: {results['flops_convention']}")
    print(
        "the implementations agree (T=640, window 200 and causal): max |diff| "
        f"{check['max_abs_diff']:.1e}"
    )
    print(
        "of mm: of jnp.matmul [8, T, 64] @ [8, 64, T] (T <= 4096); of blk: of "
        "the two matmuls of one 512-block (compute-bound)"
    )
    header = (
        f"{'T':>6s} {'mask':7s} {'impl':10s} {'pass':8s} {'RSS GB':>8s} "
        f"{'ms':>10s} {'GFLOP/s':>8s} {'of mm':>6s} {'of blk':>6s}"
    )
    model = MemoryModel()
    for length in lengths:
        peaks, info = run_child(
            ["--child=matmul", f"--length={length}", f"--repeats={args.repeats}"]
        )
        if peaks is None:
            raise SystemExit(f"the matmul child failed: {info.get('stderr')}")
        results["matmul"].append(peaks)
        print(
            f"\nT={length}: jnp.matmul at the logits' size "
            f"{peaks['full']['flops_per_s'] / 1e9:.1f} GFLOP/s, at one block's "
            f"{peaks['block']['flops_per_s'] / 1e9:.1f} GFLOP/s"
        )
        print(header)
        for mask, window in masks:
            for implementation in implementations:
                for passes in PASSES:
                    row = {
                        "T": length,
                        "mask": mask,
                        "implementation": implementation,
                        "passes": passes,
                    }
                    predicted = model.predict(implementation, passes, length)
                    row["predicted_bytes"] = predicted
                    prefix = f"{length:6d} {mask:7s} {implementation:10s} {passes:8s}"
                    if predicted > args.max_gb * 1e9:
                        row["skipped"] = (
                            f"predicted {_gb(predicted)} GB > {args.max_gb} GB"
                        )
                        print(f"{prefix} skipped: predicted peak {_gb(predicted)} GB")
                        results["runs"].append(row)
                        continue
                    extra = [
                        "--child=attention",
                        f"--implementation={implementation}",
                        f"--passes={passes}",
                        f"--length={length}",
                        f"--repeats={args.repeats}",
                        f"--budget-s={args.budget_s}",
                    ]
                    if window is not None:
                        extra.append(f"--window-size={window}")
                    tail = _measure(row, extra, predicted, peaks, window)
                    if "rss_bytes" in row:
                        model.add(implementation, passes, length, row["rss_bytes"])
                    results["runs"].append(row)
                    _write(args.out, results)
                    print(f"{prefix} {tail}", flush=True)
        print(f"-- {time.perf_counter() - started:.0f} s so far", flush=True)

    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    found, info = run_child(["--child=ring", f"--length={ring_length}"], env=env)
    if found is None:
        print(f"ring failed: {info.get('stderr', '')[-1000:]}")
    else:
        results["ring"] = found
        print(
            f"\nring_attention, T={ring_length}, causal, load-balanced order: "
            "per-device memory of the compiled program (memory_analysis: "
            "arguments + outputs + temporaries)"
        )
        print(f"{'devices':>7s} {'pass':8s} {'peak GB':>8s} {'temp GB':>8s}")
        for row in found:
            print(
                f"{row['devices']:7d} {row['passes']:8s} {_gb(row['peak_bytes']):>8s} "
                f"{_gb(row['temp_bytes']):>8s}"
            )
    rows = targets(results)
    results["targets"] = [
        {"target": label, "measured": text, "met": met} for label, text, met in rows
    ]
    _write(args.out, results)
    print("\ntargets:")
    for label, text, met in rows:
        verdict = {True: "met", False: "MISSED", None: "-"}[met]
        print(f"  {verdict:6s} {label}: {text}")
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
