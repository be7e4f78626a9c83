"""`jaxgen report OUT`: rebuild a dataset's report page (OUT/report.html) from its files."""

from __future__ import annotations

import argparse

from jaxgen.report import GALLERY_LIMIT


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="a dataset directory written by `jaxgen generate` (local)")
    p.add_argument("--thumbs-per-page", type=int, default=48, help="gallery page size")
    p.add_argument("--thumb-size", type=int, default=128, help="thumbnail side in pixels")
    p.add_argument("--max-images", type=int, default=GALLERY_LIMIT,
                   help="the gallery shows the first this many images")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.report import build_report

    path = build_report(args.out, thumbs_per_page=args.thumbs_per_page,
                        thumb_size=args.thumb_size, max_images=args.max_images)
    print(f"wrote {path}")
    return 0
