"""What a UNet variant's stage-2 train step costs on this machine, and where the time goes.

    .venv/bin/python -m benchmarks.bench_unet_step                 # the default model's UNet
    .venv/bin/python -m benchmarks.bench_unet_step '{"block_out_channels": [32, 64, 128, 128]}'
    .venv/bin/python -m benchmarks.bench_unet_step --profile '{}'  # time by UNet block

Each argument is a JSON object of UNet config fields (diffusers' names) that replace the
default model's (or --model's); the variant gets fresh weights and is trained on with
stage 2's step (`jaxgen.train`: VAE posterior sample, frozen text encoder, UNet forward and
backward, AdamW, EMA) on that model's VAE and text encoder, batch 32, over one XLA device per
core as `jaxgen train` runs. Printed: parameters, XLA's FLOP count, seconds per step (median
of --rounds rounds of 5 steps). With --profile, 3 more steps run under the JAX profiler and
the ops' time is summed by the UNet block (or frozen model) they belong to.
docs/benchmarks.md ("Where the train step's time goes") and docs/shapes-lab-notebook.md ("A
narrower UNet") hold the figures.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jaxgen.engine.sharding import use_all_cpu_cores

BLOCK = re.compile(r"(down_blocks_\d|up_blocks_\d|mid_block|conv_in|conv_out|time_embedding"
                   r"|AutoencoderKL|CLIPTextModel)")


def variant_step(model_dir: str, overrides: dict[str, Any], batch: int = 32):
    """(step, state, batches, UNet params) for `model_dir`'s UNet with `overrides`."""
    import jax
    import numpy as np

    from benchmarks.harness.train_systems import stage2_batches, stage2_train_config
    from jaxgen.models import UNet2DConditionModel
    from jaxgen.schedulers import SchedulerConfig
    from jaxgen.train.diffusion import diffusion_loss_fn, init_denoiser
    from jaxgen.train.loop import data_mesh, make_train_step, shard_train_step
    from jaxgen.train.state import create_state
    from jaxgen.weights.model_dir import load_model

    model = load_model(model_dir)
    cfg = stage2_train_config()
    _, vae, text = model.modules(cfg.compute_dtype())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    unet = UNet2DConditionModel(dataclasses.replace(model.unet, **fields), cfg.compute_dtype())
    schedule = SchedulerConfig.from_dict(model.scheduler_config)
    loss = diffusion_loss_fn(unet, text, vae, schedule, model.vae.scaling_factor)
    step = shard_train_step(make_train_step(loss, cfg), data_mesh(batch_size=batch))
    frozen = jax.tree.map(lambda a: np.asarray(a, np.float32), model.params)
    unet_params = init_denoiser(unet, text, 0, model.unet.sample_size)["unet"]
    state = step.place_state(create_state(
        {"unet": unet_params}, cfg,
        frozen={"vae": frozen["vae"], "text_encoder": frozen["text_encoder"]}))
    batches = [step.place_batch(b) for b in stage2_batches({"batch": batch, "distinct": 4},
                                                      model.tokenizer)]
    return step, state, batches, sum(x.size for x in jax.tree.leaves(unet_params))


def op_blocks(hlo_text: str) -> dict[str, str]:
    """Each instruction of the compiled step -> the model block its metadata names."""
    blocks, body_block, current = {}, {}, None
    for line in hlo_text.splitlines():
        if not line.startswith(" "):  # a computation's header: its ops' names follow
            current = line.split(" ")[0].lstrip("%")
            continue
        found = BLOCK.search(line)
        if current and found and current not in body_block:
            body_block[current] = found.group(1)
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = .*?\(", line)
        if not m:
            continue
        found = BLOCK.search(line)
        called = re.search(r"calls=%([\w.\-]+)", line)
        block = found.group(1) if found else body_block.get(called.group(1)) if called else None
        blocks[m.group(1)] = block or "unattributed (mostly conv kernel gradients)"
    return blocks


def profile(step, state, batches, hlo_text: str) -> tuple[dict[str, float], float]:
    """ms per step by block (summed over devices), and the collectives' ms per step;
    `hlo_text`: the compiled step's."""
    import jax

    blocks = op_blocks(hlo_text)
    steps = 3
    with tempfile.TemporaryDirectory() as out:
        jax.profiler.start_trace(out, create_perfetto_trace=True)
        for i in range(steps):
            state, metrics = step(state, batches[i % len(batches)])
        jax.block_until_ready((state, metrics))
        jax.profiler.stop_trace()
        trace = next(Path(out).rglob("perfetto_trace.json.gz"))
        events = json.load(gzip.open(trace))["traceEvents"]
    by_block: dict[str, float] = collections.defaultdict(float)
    collectives = 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        if e["name"].startswith("all-reduce"):
            collectives += e["dur"] / 1e3 / steps
        elif e["name"] in blocks:
            by_block[blocks[e["name"]]] += e["dur"] / 1e3 / steps
    return dict(by_block), collectives


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", default=["{}"], help="JSON UNet config overrides")
    p.add_argument("--model", help="diffusers-format model directory (default: jaxgen's)")
    p.add_argument("--batch", type=int, default=32, help="stage 2's batch size")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    use_all_cpu_cores()
    import jax

    from jaxgen.default_model import default_model_path

    model_dir = args.model or str(default_model_path())
    for text in args.variants:
        step, state, batches, n_params = variant_step(model_dir, json.loads(text), args.batch)
        state, metrics = step(state, batches[0])  # compile
        jax.block_until_ready(metrics)
        compiled = step.fn.lower(state, batches[0]).compile()  # for its FLOPs and ops' names
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        gflop = cost["flops"] * step.mesh.size / 1e9  # XLA counts one device's share
        rounds = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for i in range(5):
                state, metrics = step(state, batches[i % len(batches)])
            jax.block_until_ready((state, metrics))
            rounds.append((time.perf_counter() - t) / 5)
        print(f"{text}: {n_params / 1e6:.2f}M UNet params, {gflop:.1f} GFLOP/step, "
              f"{statistics.median(rounds):.3f} s/step (rounds: "
              f"{', '.join(f'{r:.3f}' for r in rounds)}; {step.mesh.size} devices)", flush=True)
        if args.profile:
            by_block, collectives = profile(step, state, batches, compiled.as_text())
            total = sum(by_block.values()) + collectives
            print(f"  op time, ms per step summed over devices ({total:.0f} in all):")
            for name, ms in sorted(by_block.items(), key=lambda kv: -kv[1]):
                print(f"  {ms:8.1f}  {name}")
            print(f"  {collectives:8.1f}  gradient all-reduce")


if __name__ == "__main__":
    main()
