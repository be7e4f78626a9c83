"""What `jaxgen generate` tells its user while and after it runs: a progress bar in images,
the summary, and the exit status."""

from __future__ import annotations

import threading
from typing import Any

from jaxgen.dataset.config import JobConfig

# Exit statuses of `jaxgen generate` (the --help epilog prints this table).
EXIT_OK = 0  # done: every row generated, or some rejected without --strict
EXIT_USAGE = 2  # a bad command line, setting, model directory or resume with other settings
EXIT_SOME_REJECTED = 3  # --strict, and some rows were rejected
EXIT_NONE_GENERATED = 4  # every row was rejected: nothing generated, no model loaded
EXIT_INTERRUPTED = 130  # Ctrl-C; rerun the same command to resume
EXIT_STATUSES = {EXIT_OK: "done (rejected rows fail the job only with --strict)",
                 EXIT_USAGE: "usage, setting or model error",
                 EXIT_SOME_REJECTED: "some rows rejected (with --strict)",
                 EXIT_NONE_GENERATED: "every row rejected: nothing generated",
                 EXIT_INTERRUPTED: "interrupted (Ctrl-C); rerun the same command to resume"}


def exit_statuses_help() -> str:
    return "exit status:\n" + "\n".join(f"  {k:<4} {v}" for k, v in EXIT_STATUSES.items())


def exit_status(summary: dict[str, Any], strict: bool = False) -> int:
    """The exit status a summary (or a dry run's plan) earns."""
    counts = summary.get("counts")
    if summary.get("complete") is False or not counts:
        return EXIT_OK  # one host of several: the last one judges the whole job
    made = counts.get("rows_valid" if summary.get("dry_run") else "rows_generated", 0)
    if counts["rows_read"] and not made:
        return EXIT_NONE_GENERATED
    if strict and counts["rows_rejected"]:
        return EXIT_SOME_REJECTED
    return EXIT_OK


class Progress:
    """A progress bar in images, fed by the shard stats files as they land (any runner
    writing to a filesystem this process can list). Rate and ETA count only the images of
    this run: shards complete before it (a resume) start the bar but not the clock."""

    def __init__(self, config: JobConfig):
        from tqdm import tqdm

        from jaxgen.dataset.progress import completed_shards

        self.config = config
        self.seen: dict[str, int] = {}
        _, before = completed_shards(config.output, self.seen)
        # smoothing=0: the rate is (images - initial) / elapsed, this run's images only.
        self.bar = tqdm(total=None, initial=before, unit="img", desc="jaxgen", smoothing=0,
                        dynamic_ncols=True)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        self.bar.total = _estimate_images(self.config) or None
        while not self.done.wait(2.0):
            self._update()

    def _update(self) -> None:
        from jaxgen.dataset.progress import completed_shards

        _, images = completed_shards(self.config.output, self.seen)
        self.bar.n = images
        self.bar.refresh()

    def stop(self, finished: bool = True) -> None:
        self.done.set()
        self.thread.join()
        self._update()
        if finished:  # rejected rows' images never come: a finished job is 100%
            self.bar.total = self.bar.n
            self.bar.refresh()
        else:  # the error's one line (or Ctrl-C's) is what the user reads
            self.bar.leave = False
        self.bar.close()


def _estimate_images(config: JobConfig) -> int:
    from jaxgen.dataset.progress import count_images

    try:
        return count_images(config)
    except Exception:  # the bar is a convenience; the pipeline reports real errors
        return 0


def print_summary(summary: dict[str, Any]) -> None:
    """The summary line, then where things went and how fast (stdout)."""
    from jaxgen.beam.pipeline import summary_line
    from jaxgen.dataset.writers import REJECTS_DIR, join

    print(summary_line(summary))
    if summary.get("complete") is False:
        return
    c = summary["counts"]
    output = summary["config"]["output"]
    lines = {"output": output}
    if summary.get("dry_run"):
        lines["rows"] = f"{c['rows_read']} read, {c['rows_valid']} valid, " \
                        f"{c['rows_rejected']} rejected"
        lines["images"] = f"{c['images_planned']} planned"
    else:
        lines["rows"] = f"{c['rows_read']} read, {c['rows_generated']} generated, " \
                        f"{c['rows_rejected']} rejected"
        # From the shard stats this run wrote, not Beam's metrics: a runner without metrics
        # (Beam's DaskRunner) still counts.
        made = summary.get("this_run", {}).get("images", 0)
        lines["images"] = f"{c['images']} ({made} made by this run)"
        wall = summary.get("wall_s")
        if wall is not None:
            lines["time"] = f"{wall:.1f} s wall, {made / max(wall, 1e-9):.2f} img/s"
    if c["rows_rejected"]:
        by_field = ", ".join(f"{k} {v}" for k, v in c.get("rejects_by_field", {}).items())
        lines["rejects"] = f"{join(output, REJECTS_DIR)}/ (by field: {by_field})"
    print("\n".join(f"  {k:<7} {v}" for k, v in lines.items()))
