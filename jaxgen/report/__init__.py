"""The run report: OUT/report.html, a static page to look at what `jaxgen generate` made.

Modules: output (counts, settings, timings, rejects from the small files), gallery
(thumbnails, streaming the shards once), page (the HTML), build (build_report).
"""

from jaxgen.report.build import REPORT_DIR, REPORT_FILE, build_report
from jaxgen.report.gallery import GALLERY_LIMIT

__all__ = ["GALLERY_LIMIT", "REPORT_DIR", "REPORT_FILE", "build_report"]
