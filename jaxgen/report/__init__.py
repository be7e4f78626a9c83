"""The run report: OUT/report.html, a static page to look at what `jaxgen generate` made.

Modules: output (counts, settings, timings, rejects from the small files), gallery
(thumbnails, streaming the shards once), page (the HTML), build (build_report).
The names below are plain constants; build_report is imported on first use, so the CLI can
show these defaults without loading Beam.
"""

from typing import Any

GALLERY_LIMIT = 10_000  # thumbnails at most: the first images, in key order
REPORT_FILE = "report.html"
REPORT_DIR = "_report"

__all__ = ["GALLERY_LIMIT", "REPORT_DIR", "REPORT_FILE", "build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from jaxgen.report.build import build_report

        return build_report
    raise AttributeError(f"module 'jaxgen.report' has no attribute {name!r}")
