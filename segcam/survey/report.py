"""``segcam report``: one self-contained HTML page a reviewer opens in a browser.

Run facts (model, weights sha256, method, layers, images, failures), crack statistics (count, total
length, a width histogram, a per-image table), the review queue (the :data:`QUEUE_ROWS` cracks with the
highest review score: photo crop | predicted crack | its own map) and the concept atlas when
``segcam atlas`` has written one. Everything is inline (base64 images, no script, no network, no CDN);
thumbnails are the small crops the run saved, so the page stays small whatever the survey size.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["QUEUE_ROWS", "write_report"]

#: Cracks shown in the review queue (the rest are in cracks.csv, ranked).
QUEUE_ROWS = 200
#: Images listed in the per-image table (the rest are in summary.csv).
IMAGE_ROWS = 2000


def _png(arr: np.ndarray) -> str:
    from segcam.utils.files import encode_image

    return "data:image/png;base64," + base64.b64encode(encode_image(np.ascontiguousarray(arr), ".png")).decode()


def _fig_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _histogram(widths: list[float], unit: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.hist(widths, bins=min(30, max(5, len(set(widths)))), color="#c0392b")
    ax.set_xlabel(f"mean width ({unit})")
    ax.set_ylabel("cracks")
    fig.tight_layout()
    out = _fig_png(fig)
    plt.close(fig)
    return out


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f} %"


def _map_rgb(t: dict[str, np.ndarray]) -> np.ndarray:
    from segcam.cam.overlay import heatmap

    return heatmap(t["map"].astype(np.float32) / 255.0, "inferno")


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img.t{height:72px;image-rendering:auto}
.facts td{text-align:left}.note{color:#666;font-size:.85em}"""


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run folder (see the module docstring); returns its path.

    Raises:
        segcam.survey.atlas.AtlasError: A run without per-crack records (the message names the command).
    """
    from segcam.survey.atlas import load_run_cracks
    from segcam.survey.review import rank_rows
    from segcam.utils.files import atomic_write

    folder = Path(folder)
    run = load_run_cracks(folder)
    man = run.manifest
    model = man.get("model") or {}
    images = [r for r in man.get("images", []) if isinstance(r, dict)]
    failed = [r for r in images if r.get("status", "ok") != "ok"]
    keep = run.cracks
    rows = rank_rows([dict(run.records[i]) for i in keep])
    mm = any(r.get("length_mm") not in ("", None) for r in rows)
    unit = "mm" if mm else "px"
    lengths = [float(r.get("length_mm") if mm else r.get("length") or 0) for r in rows if not mm or r.get("length_mm") != ""]
    widths = [float(r.get("mean_width_mm") if mm else r.get("mean_width") or 0) for r in rows
              if not mm or r.get("mean_width_mm") != ""]
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>segcam report: {esc(folder.name)}</title>"
             f"<style>{CSS}</style></head><body><h1>segcam report: {esc(folder.name)}</h1>"]
    layers = ", ".join(str(x.get("requested", x)) if isinstance(x, dict) else str(x) for x in man.get("layers", []))
    facts = [("model", f"{model.get('name', '?')} (tag {model.get('tag') or '-'})"),
             ("weights sha256", model.get("weights_sha256") or "-"), ("method", man.get("method", "?")),
             ("layers", layers), ("target", man.get("target", "?")), ("images", len(images)),
             ("failed images", len(failed)), ("segcam", (man.get("versions") or {}).get("segcam", "?"))]
    parts.append("<h2>Run</h2><table class='facts'>" + "".join(
        f"<tr><th class='l'>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts) + "</table>")
    if failed:
        parts.append("<ul>" + "".join(f"<li>{esc(str(r.get('image', r.get('name'))))}: {esc(str(r.get('error', '')))}</li>"
                                      for r in failed[:50]) + "</ul>")
    parts.append("<h2>Cracks</h2>")
    if not rows:
        parts.append("<p><b>No cracks were predicted in this run.</b></p>")
    else:
        parts.append(f"<p>{len(rows)} cracks in {len({r['name'] for r in rows})} of {len(images)} images; total length "
                     f"{sum(lengths):.1f} {unit}; median mean width {np.median(widths):.2f} {unit}.</p>"
                     f"<img alt='width histogram' src='{_histogram(widths, unit)}'>")
    per_image: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        per_image.setdefault(r["name"], []).append(r)
    parts.append(f"<h3>Per image</h3><table><tr><th class='l'>image</th><th>cracks</th><th>total length ({unit})</th>"
                 f"<th>max width ({unit})</th></tr>")
    for rec in images[:IMAGE_ROWS]:
        cs = per_image.get(rec.get("name", ""), [])
        key_l, key_w = ("length_mm", "max_width_mm") if mm else ("length", "max_width")
        tot = sum(float(c.get(key_l) or 0) for c in cs)
        mx = max((float(c.get(key_w) or 0) for c in cs), default=0.0)
        parts.append(f"<tr><td class='l'>{esc(str(rec.get('name')))}</td><td>{len(cs)}</td><td>{tot:.1f}</td>"
                     f"<td>{mx:.2f}</td></tr>")
    parts.append("</table>")
    if len(images) > IMAGE_ROWS:
        parts.append(f"<p class='note'>{len(images) - IMAGE_ROWS} more images in summary.csv.</p>")
    ranked = sorted((i for i, r in enumerate(rows) if r.get("review_rank") not in ("", None)),
                    key=lambda i: int(rows[i]["review_rank"]))
    parts.append("<h2>Review queue</h2><p class='note'>Highest review score first (the likeliest false cracks); "
                 "crop | predicted crack | its own map.</p>")
    if not ranked:
        parts.append("<p>No review scores in this run (no cracks, or no review model).</p>")
    else:
        parts.append("<table><tr><th>rank</th><th>score</th><th class='l'>image</th><th>crack</th><th>crop</th>"
                     f"<th>prediction</th><th>map</th><th>length ({unit})</th><th>width ({unit})</th><th>p</th>"
                     "<th>evidence</th></tr>")
        for i in ranked[:QUEUE_ROWS]:
            r, t = rows[i], run.thumb(keep[i])
            length = r.get("length_mm") if mm else r.get("length")
            width = r.get("mean_width_mm") if mm else r.get("mean_width")
            imgs = "".join(f"<td><img class='t' alt='{k}' src='{_png(v)}'></td>" for k, v in
                           (("crop", t["photo"]), ("prediction", t["mask"]), ("map", _map_rgb(t))))
            parts.append(f"<tr><td>{r['review_rank']}</td><td>{float(r['review_score']):.3f}</td>"
                         f"<td class='l'>{esc(str(r['name']))}</td><td>{r['crack']}</td>{imgs}<td>{float(length):.1f}</td>"
                         f"<td>{float(width):.2f}</td><td>{float(r.get('mean_prob') or 0):.2f}</td>"
                         f"<td>{esc(str(r.get('evidence_where', '')))}</td></tr>")
        parts.append("</table>")
        if len(ranked) > QUEUE_ROWS:
            parts.append(f"<p class='note'>{len(ranked) - QUEUE_ROWS} more cracks in cracks.csv (column review_rank).</p>")
    atlas_json, atlas_png = folder / "atlas" / "atlas.json", folder / "atlas" / "atlas.png"
    parts.append("<h2>Concept atlas</h2>")
    if atlas_json.is_file() and atlas_png.is_file():
        data = json.loads(atlas_json.read_text(encoding="utf-8"))
        parts.append("<table><tr><th>concept</th><th>cracks</th><th>false-positive share</th><th>mean p</th>"
                     "<th>mean length (px)</th><th>mean width (px)</th></tr>" + "".join(
                         f"<tr><td>C{c['concept']}</td><td>{c['members']}</td><td>{_pct(c['false_positive_share'])}"
                         f"</td><td>{c['mean_prob']:.2f}</td><td>{c['mean_length']:.1f}</td><td>{c['mean_width']:.2f}</td></tr>"
                         for c in data.get("concepts", [])) + "</table>")
        from PIL import Image

        with Image.open(atlas_png) as im:
            im = im.convert("RGB")
            im.thumbnail((1400, 1400 * 4))
            parts.append(f"<p><img alt='concept atlas' style='max-width:100%' src='{_png(np.asarray(im))}'></p>")
    else:
        parts.append(f"<p>No atlas yet: run <code>segcam atlas {esc(str(folder))}</code> first.</p>")
    parts.append("</body></html>")
    out = Path(out) if out is not None else folder / "report.html"
    text = "\n".join(parts)
    atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
    return out
