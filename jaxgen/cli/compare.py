"""`jaxgen compare`: each manifest row through jaxgen and through diffusers, from the same noise.

Rows are read as `jaxgen generate` reads them (any manifest format, the model's recommended
settings for fields a row leaves out, relative image paths against the manifest's directory);
an image-to-image or inpainting row without its own height/width gets its init image's size.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxgen.cli.progress import EXIT_USAGE
from jaxgen.images import DEFAULT_RESIZE, RESIZE_POLICIES
from jaxgen.requests import FIELD_ALIASES, GenerationRequest, RequestError, stable_seed

if TYPE_CHECKING:
    from jaxgen.dataset.config import JobConfig

EXIT_ABOVE_TOLERANCE = 1  # an image differs by more than --tolerance, or none was compared
MISSING_PEER = ("jaxgen compare: needs torch and diffusers, which come with the `test` extra: "
                "pip install 'jaxgen[test]'")


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--manifest", required=True, help="path or glob (comma-separated for several)")
    p.add_argument("--limit", type=int, metavar="N", help="compare the first N rows only")
    p.add_argument("--tolerance", type=float, default=2.0,
                   help="largest max absolute pixel difference allowed, 0-255 (default: 2)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write DIR/compare.json")
    p.add_argument("--job-seed", type=int, default=0,
                   help="seed of rows that give none, derived per row as generate does "
                   "(default: 0)")
    p.add_argument("--batch-size", type=int,
                   help="jaxgen's images per device step, global (default: by device count)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="jaxgen's compute precision; diffusers runs float32 (default: float32, "
                   "which the tolerance is meant for)")
    p.add_argument("--resize", choices=RESIZE_POLICIES, help="fitting init images and masks "
                   f"to a row's size (default: {DEFAULT_RESIZE})")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.default_model import default_model_path

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit}: must be at least 1")
    if args.tolerance < 0:
        raise ValueError(f"--tolerance {args.tolerance}: must be at least 0")
    try:
        from jaxgen.eval.diffusers_peer import DiffusersPeer

        model = str(args.model or default_model_path())
        peer = DiffusersPeer(model)
    except ImportError:
        print(MISSING_PEER, file=sys.stderr)
        return EXIT_USAGE
    from jaxgen.engine.spec import GeneratorSpec
    from jaxgen.eval.compare import compare

    spec = GeneratorSpec(model=model, dtype=args.dtype, batch_size=args.batch_size,
                         resize=args.resize)
    spec.check()
    generator = spec.build()
    rows = _rows(args, model, generator.model.size_multiple, generator.model.native_size)
    result = compare(generator, peer, rows, args.tolerance, show=print)
    print(result.summary())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"wrote {args.out / 'compare.json'}")
    return 0 if result.passed else EXIT_ABOVE_TOLERANCE


def _rows(args: argparse.Namespace, model: str, size_multiple: int,
          native_size: int) -> Iterator[tuple[str, GenerationRequest | RequestError]]:
    """(file:line, request) of the manifest's rows, up to --limit; a row that cannot become a
    request comes as (file:line, the RequestError), which compare reports and skips."""
    from jaxgen.dataset.config import load_job_config
    from jaxgen.dataset.manifest import iter_rows, match_manifest
    from jaxgen.weights.model_dir import recommended_settings

    defaults = {**recommended_settings(model), "height": native_size, "width": native_size}
    config = load_job_config(None, {"manifest": args.manifest, "output": "-",
                                    "job_seed": args.job_seed, "size_multiple": size_multiple},
                             defaults)
    place, seen = 0, 0
    for file in match_manifest(config.manifest_patterns, config.manifest_format):
        for raw in iter_rows(file, config.max_line_bytes):
            if args.limit is not None and seen >= args.limit:
                return
            seen, place, label = seen + 1, place + 1, f"{file.path}:{raw.line}"
            try:
                if raw.error is not None:
                    raise RequestError(raw.error[0], raw.raw, raw.error[1])
                yield label, _request(raw.fields or {}, raw.text_values, file.path, config,
                                      functools.partial(stable_seed, config.job_seed,
                                                        place=place - 1))
            except RequestError as err:
                yield label, err


def _request(fields: dict[str, Any], text_values: bool, manifest: str, config: JobConfig,
             fallback_seed: Callable[[str | None], int]) -> GenerationRequest:
    from jaxgen.dataset.rows import row_to_request
    from jaxgen.images import resolve_image_ref

    request = row_to_request(fields, config, text_values=text_values, fallback_seed=fallback_seed)
    if request.init_image is None:
        return request
    given = {FIELD_ALIASES.get(k, k) for k, v in fields.items() if v not in (None, "")}
    # No size of its own: the init image's (the Generator fills it in when it reads it).
    sized = {} if {"height", "width"} & given else {"height": None, "width": None}
    mask = request.mask_image
    return dataclasses.replace(
        request, **sized, init_image=resolve_image_ref(request.init_image, manifest),
        mask_image=None if mask is None else resolve_image_ref(mask, manifest,
                                                               field="mask_image"))
