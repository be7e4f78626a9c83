"""The console a user sees: jaxgen's own lines; other libraries' warnings only with -v.

Beam logs many of its warnings through the root logger (`logging.warning(...)` in its type
hints and GCP clients: the "WARNING:root:" lines), so a level on the "apache_beam" logger
misses them; a filter on the root logger drops them by the file that logged them.
"""

from __future__ import annotations

import logging
import os
import warnings

# Loggers of the libraries jaxgen drives; their warnings are for their own developers.
FOREIGN_LOGGERS = ("apache_beam", "absl", "jax", "transformers", "huggingface_hub",
                   "urllib3", "filelock")


class _NotFromBeam(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Beam's compiled modules record a relative path ("apache_beam/runners/common.py").
        path = record.pathname.replace(os.sep, "/")
        return not (path.startswith("apache_beam/") or "/apache_beam/" in path)


def set_up_console(verbose: bool = False) -> None:
    """Call once, first thing, before Beam or transformers are imported (both log on import)."""
    logging.getLogger("jaxgen").setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        logging.basicConfig()  # a root handler, so jaxgen's info lines show too
        return
    for name in FOREIGN_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Beam logs a failing DoFn's traceback at ERROR, then raises: the command reports it once.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    logging.getLogger().addFilter(_NotFromBeam())
    # transformers sets its own level from this at import, and its workers inherit it.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", module=r"apache_beam(\.|$)")
