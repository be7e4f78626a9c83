"""report.html: one static page, its style and its paging script inline, nothing fetched.

Every string that comes from the run (prompts, paths, reasons, raw rows) goes through
`html.escape`; the Content-Security-Policy allows only this page's own script (by hash),
so even a string that slipped through could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

from jaxgen.report.gallery import Thumbnail
from jaxgen.report.output import RejectGroup, RunFacts

_RAW_ROW_CHARS = 300  # a manifest row can be a megabyte: the page shows its start

_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
  background: #f6f7f9; }
[hidden] { display: none !important; }  /* .grid and .pager set display */
body { margin: 0 auto; max-width: 1200px; padding: 24px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { font-size: 18px; margin: 0 0 12px; }
.path { font-family: ui-monospace, Menlo, Consolas, monospace; color: #4a5563; margin: 0;
  word-break: break-all; }
.status { display: inline-block; margin-top: 8px; padding: 2px 10px; border-radius: 10px;
  font-size: 13px; background: #dff3e4; color: #17602c; }
.status.partial { background: #fff1d6; color: #8a5300; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 16px 20px;
  margin-top: 18px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.tile { background: #f6f7f9; border-radius: 6px; padding: 10px 14px; }
.tile b { display: block; font-size: 24px; } .tile span { color: #4a5563; font-size: 13px; }
.tile.bad b { color: #b42318; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
  gap: 0 18px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px;
  border-bottom: 1px solid #eef0f2; }
th { color: #4a5563; font-weight: 500; white-space: nowrap; }
td { word-break: break-word; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
details { margin-bottom: 8px; } summary { cursor: pointer; font-weight: 600; }
.note { color: #4a5563; font-size: 14px; }
.pager { display: flex; align-items: center; gap: 12px; margin: 8px 0 14px; }
.pager button { font: inherit; padding: 4px 14px; border: 1px solid #c9ced6; border-radius: 6px;
  background: #fff; cursor: pointer; } .pager button:disabled { opacity: .4; cursor: default; }
.grid { display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fill, minmax(var(--thumb), 1fr)); }
.grid figure { margin: 0; text-align: center; }
.grid img { width: var(--thumb); height: var(--thumb); object-fit: contain;
  image-rendering: pixelated; background: #e9ecef; border-radius: 4px; }
.grid figcaption { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px;
  color: #4a5563; }
"""

_SCRIPT = """
(() => {
  const pages = Array.from(document.querySelectorAll("#gallery .page"));
  const pager = document.getElementById("pager");
  const label = document.getElementById("page-label");
  const prev = document.getElementById("prev"), next = document.getElementById("next");
  let current = 0;
  function show(i) {
    current = Math.max(0, Math.min(pages.length - 1, i));
    pages.forEach((page, j) => { page.hidden = j !== current; });
    label.textContent = "Page " + (current + 1) + " of " + pages.length;
    prev.disabled = current === 0;
    next.disabled = current === pages.length - 1;
  }
  if (pages.length < 2) return;
  prev.addEventListener("click", () => show(current - 1));
  next.addEventListener("click", () => show(current + 1));
  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") show(current - 1);
    if (e.key === "ArrowRight") show(current + 1);
  });
  pager.hidden = false;
  show(0);
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _shown(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_shown(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _tile(name: str, label: str, value: int, *, bad: bool = False) -> str:
    cls = "tile bad" if bad and value else "tile"
    return f'<div class="{cls}"><b id="count-{name}">{value:,}</b><span>{_e(label)}</span></div>'


def _counts(c: dict[str, int]) -> str:
    shards = f"{c['shards_complete']:,} of {c['shards']:,}"
    return (
        '<section id="counts"><h2>Counts</h2><div class="tiles">'
        + _tile("rows-read", "rows read", c["rows_read"])
        + _tile("rows-generated", "rows generated", c["rows_generated"])
        + _tile("rows-rejected", "rows rejected", c["rows_rejected"], bad=True)
        + _tile("images", "images", c["images"])
        + f'<div class="tile"><b id="count-shards">{_e(shards)}</b>'
        + "<span>shards complete</span></div></div></section>"
    )


def _reject_group(group: RejectGroup) -> str:
    rows = []
    for r in group.examples:
        raw = str(r.get("row", ""))
        if len(raw) > _RAW_ROW_CHARS:
            raw = raw[:_RAW_ROW_CHARS] + "…"
        where = f"{r.get('source', '?')}:{r.get('line', '?')}"
        rows.append(
            f"<tr><td><code>{_e(where)}</code></td><td><code>{_e(r.get('key', ''))}</code></td>"
            f'<td class="reason">{_e(r.get("reason", ""))}</td><td><code>{_e(raw)}</code></td></tr>'
        )
    more = group.count - len(group.examples)
    tail = f'<p class="note">… and {more:,} more</p>' if more > 0 else ""
    rows_word = "row" if group.count == 1 else "rows"
    return (
        f'<details open class="reject-group" data-field="{_e(group.field)}">'
        f"<summary>{_e(group.field)}: {group.count:,} {rows_word}</summary>"
        "<table><tr><th>file:line</th><th>key</th><th>reason</th><th>row</th></tr>"
        + "".join(rows) + f"</table>{tail}</details>"
    )


def _rejects(groups: list[RejectGroup]) -> str:
    body = "".join(_reject_group(g) for g in groups) or '<p class="note">No rejected rows.</p>'
    return f'<section id="rejects"><h2>Rejects, by the field at fault</h2>{body}</section>'


def _figure(t: Thumbnail) -> str:
    hover = f"{t.prompt}\nseed {t.seed} · key {t.key}"
    return (
        f'<figure class="thumb" title="{_e(hover)}" data-key="{_e(t.key)}">'
        f'<img src="{_e(t.path)}" alt="{_e(t.prompt)}" loading="lazy">'
        f"<figcaption>{_e(t.key)}</figcaption></figure>"
    )


def _gallery(thumbs: list[Thumbnail], images: int, per_page: int, size: int, limit: int) -> str:
    pages = [thumbs[i : i + per_page] for i in range(0, len(thumbs), per_page)]
    note = f"{len(thumbs):,} images, {per_page} a page."
    if images > len(thumbs):
        note = (
            f"Showing the first {len(thumbs):,} of {images:,} images "
            f"(the gallery stops at {limit:,}), {per_page} a page."
        )
    note += " Hover over an image for its prompt, seed and key."
    body = "".join(
        f'<div class="page grid" data-page="{n + 1}"{" hidden" if n else ""}>'
        + "".join(_figure(t) for t in page) + "</div>"
        for n, page in enumerate(pages)
    ) or '<p class="note">No images.</p>'
    return (
        f'<section id="gallery" style="--thumb: {size}px"><h2>Gallery</h2>'
        f'<p class="note" id="gallery-note">{_e(note)}</p>'
        '<nav class="pager" id="pager" hidden><button id="prev">‹ Previous</button>'
        '<span id="page-label"></span><button id="next">Next ›</button></nav>'
        f"{body}</section>"
    )


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    return (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )


def render(
    facts: RunFacts, thumbs: list[Thumbnail], *, per_page: int, size: int, limit: int
) -> str:
    """The whole page as text."""
    status = "complete" if facts.complete else "partial: the job has not finished"
    status_cls = "status" if facts.complete else "status partial"
    timings = _table(facts.timings) if facts.timings else '<p class="note">No shard timed.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>jaxgen run report: {_e(facts.out_dir.name)}</title><style>{_STYLE}</style>"
        "</head><body><header><h1>jaxgen run report</h1>"
        f'<p class="path">{_e(facts.out_dir)}</p>'
        f'<span class="{status_cls}">{_e(status)} · {_e(facts.output_format)}</span></header>'
        + _counts(facts.counts)
        + '<div class="columns"><section id="settings"><h2>Settings</h2>'
        + _table(facts.settings)
        + '</section><section id="timings"><h2>Timings</h2>'
        + timings + "</section></div>"
        + _rejects(facts.rejects)
        + _gallery(thumbs, facts.counts["images"], per_page, size, limit)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
