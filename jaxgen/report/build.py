"""build_report: OUT/report.html and its thumbnails under OUT/_report/, from the output alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jaxgen.report import GALLERY_LIMIT, REPORT_DIR, REPORT_FILE
from jaxgen.report.gallery import write_thumbnails
from jaxgen.report.output import read_run
from jaxgen.report.page import render


def build_report(
    out_dir: str | Path,
    *,
    thumbs_per_page: int = 48,
    thumb_size: int = 128,
    max_images: int = GALLERY_LIMIT,
) -> Path:
    """Write OUT/report.html (counts, settings, timings, rejects, a paged gallery).

    Returns the page's absolute path (what a browser opens); the page shows OUT as given.
    Rebuilding replaces the previous report. The gallery holds the first `max_images`
    images; the page says so when the dataset has more. A local directory only.
    """
    out = Path(out_dir)
    if thumbs_per_page < 1 or thumb_size < 16:
        raise ValueError(
            f"thumbs_per_page {thumbs_per_page}, thumb_size {thumb_size}: "
            "need at least 1 thumbnail a page and 16 pixels"
        )
    facts = read_run(out)
    shutil.rmtree(out / REPORT_DIR, ignore_errors=True)  # thumbnails of an earlier build
    thumbs = write_thumbnails(
        out, facts.output_format, facts.shard_names, size=thumb_size, limit=max_images
    )
    page = render(facts, thumbs, per_page=thumbs_per_page, size=thumb_size, limit=max_images)
    path = out / REPORT_FILE
    tmp = path.with_name(REPORT_FILE + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a page
    return path.resolve()
