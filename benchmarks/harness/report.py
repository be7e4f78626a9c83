"""The benchmark's report: environment facts, markdown tables and a PNG plot (PIL only)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from typing import Any

COLOURS = [(31, 119, 180), (214, 39, 40), (255, 127, 14), (44, 160, 44)]


def environment() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                   if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "torch", "diffusers", "transformers", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(), "versions": versions}


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def derived(report: dict[str, Any], case: dict[str, Any], batch: str) -> dict[str, Any]:
    """images/s, ratio, MFU and UNet utilisation of both systems at one batch size."""
    peak = report["peak_flops_per_s"]
    row = case["batches"][batch]
    flops = row["jaxgen"]["prepare"]["flops_per_image"]
    unet_flops = row["jaxgen"]["prepare"]["xla_unet_flops_per_image_step"] * int(batch)
    out: dict[str, Any] = {}
    for s in report["systems"]:
        summary = row[s]["summary"]
        out[s] = {**summary, "mfu": flops * summary["images_per_s"] / peak,
                  "unet_util": unet_flops / row[s]["unet"]["median_s"] / peak,
                  "first_call_s": row[s]["prepare"]["first_call_s"]}
    peers = [s for s in report["systems"] if s.startswith("diffusers")]
    out["best_peer"] = max(peers, key=lambda s: out[s]["images_per_s"])
    # against the faster diffusers setting at this batch: the conservative ratio
    out["ratio"] = out["jaxgen"]["images_per_s"] / out[out["best_peer"]]["images_per_s"]
    out["compile_s"] = out["jaxgen"]["first_call_s"] - out["jaxgen"]["median_s"]
    return out


def _table_head(systems: list[str]) -> list[str]:
    cols = [f"{s} img/s (min-max)" for s in systems] + ["jaxgen / best diffusers"] + \
        [f"{s} MFU / UNet util" for s in systems] + ["load"]
    return ["| case | batch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    v = env["versions"]
    lines = [f"{env['date']}; {env['cpu']}, {env['cores']} cores; jax {v['jax']}, flax "
             f"{v['flax']}, torch {v['torch']}, diffusers {v['diffusers']}; matmul peak "
             f"{report['peak_flops_per_s'] / 1e9:.0f} GFLOP/s (jax, best of "
             f"{report['peak_before']['flops_per_s'] / 1e9:.0f} before / "
             f"{report['peak_after']['flops_per_s'] / 1e9:.0f} after)", "",
             *_table_head(report["systems"])]
    for name, case in report["cases"].items():
        st = case["settings"]
        for batch in case["batches"]:
            d = derived(report, case, batch)
            cells = [f"{_f(d[s]['images_per_s'])} ({_f(int(batch) / d[s]['max_s'])}-"
                     f"{_f(int(batch) / d[s]['min_s'])})" for s in report["systems"]]
            mfu = [f"{d[s]['mfu']:.0%} / {d[s]['unet_util']:.0%}" for s in report["systems"]]
            load = statistics.mean(d[s]["loadavg"] for s in report["systems"])
            # diffusers' dtype, where it is not jaxgen's (--torch-dtype, or float16 on a GPU)
            peer = "" if st["torch_dtype"] == st["dtype"] else f", diffusers {st['torch_dtype']}"
            lines.append(f"| {name} {st['size']}px {st['steps']} steps{peer} | {batch} | "
                         + " | ".join(cells) + f" | {d['ratio']:.2f}x | " + " | ".join(mfu)
                         + f" | {load:.1f} |")
    lines += ["", "| case | GFLOP/image (XLA) | UNet GFLOP/step/image XLA / analytic | "
              "jaxgen compile (cold) s | warm start: first image s (process) | "
              "diffusers first call s | peak RSS MB " + " / ".join(report["systems"]) + " |",
              "|---|---|---|---|---|---|---|"]
    for name, case in report["cases"].items():
        first = next(iter(case["batches"].values()))
        prep = first["jaxgen"]["prepare"]
        d = derived(report, case, next(iter(case["batches"])))
        ws = case["warm_start"]
        rss = case["peak_rss_mb"]
        lines.append(
            f"| {name} | {prep['flops_per_image'] / 1e9:.1f} | "
            f"{prep['xla_unet_flops_per_image_step'] / 1e9:.3g} / "
            f"{prep['analytic_unet_flops_per_image_step'] / 1e9:.3g} | {d['compile_s']:.1f} | "
            f"{ws['first_image_s']:.2f} ({ws['process_wall_s']:.1f}) | "
            f"{first['diffusers']['prepare']['first_call_s']:.1f} | "
            + " / ".join(f"{rss[s]:.0f}" for s in report["systems"]) + " |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str, width: int = 720, height: int = 300) -> None:
    """images/s against batch size, one panel per case, jaxgen and diffusers as lines."""
    from PIL import Image, ImageDraw

    cases = report["cases"]
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    colours = dict(zip(report["systems"], COLOURS, strict=False))
    panel_w = width // max(1, len(cases))
    for k, (name, case) in enumerate(cases.items()):
        x0, y0, x1, y1 = k * panel_w + 55, 30, (k + 1) * panel_w - 15, height - 40
        batches = [int(b) for b in case["batches"]]
        ys = {s: [case["batches"][str(b)][s]["summary"]["images_per_s"] for b in batches]
              for s in report["systems"]}
        top = max(max(v) for v in ys.values()) * 1.15
        draw.rectangle([x0, y0, x1, y1], outline="black")
        st = case["settings"]
        draw.text((x0, 8), f"{name}: {st['size']}px, {st['steps']} steps, images/s", fill="black")
        for t in range(5):  # y grid and labels
            y = y1 - (y1 - y0) * t / 4
            draw.line([x0, y, x1, y], fill=(225, 225, 225))
            draw.text((x0 - 50, y - 6), f"{top * t / 4:.3g}", fill="black")

        def xpos(i: int, x0: int = x0, x1: int = x1, n: int = len(batches)) -> float:
            return x0 + 20 + (x1 - x0 - 40) * (i / max(1, n - 1))

        for i, b in enumerate(batches):
            draw.text((xpos(i) - 6, y1 + 6), str(b), fill="black")
        draw.text(((x0 + x1) // 2 - 30, y1 + 22), "batch size", fill="black")
        for s in report["systems"]:
            pts = [(xpos(i), y1 - (y1 - y0) * v / top) for i, v in enumerate(ys[s])]
            if len(pts) > 1:
                draw.line(pts, fill=colours[s], width=3)
            for x, y in pts:
                draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colours[s])
        for j, s in enumerate(report["systems"]):
            draw.text((x1 - 90, y1 - 50 + 14 * j), s, fill=colours[s])  # bottom right: empty
    img.save(path)
