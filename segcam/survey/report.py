"""``segcam report``: one self-contained HTML page an inspector can hand over, and ``cracks.geojson``.

The page, in order: a contents list; the summary (verified / rejected / unreviewed counts, totals per width class
for confirmed cracks and for all); the review queue (the :data:`QUEUE_ROWS` cracks with the highest review score
as a grid of same-size thumbnails: photo crop | predicted crack | its own map, with its verdict and, where the
run has ground truth, its truth); crack maps (each photo downsized with its cracks outlined and numbered,
coloured by verdict or review score; :mod:`segcam.survey.crackmap`); the crack table (millimetres and width class
with a pixel size); the width histogram; the concept atlas when ``segcam atlas`` has written one; the run's facts;
and, collapsed, the per-image table.

Everything is inline (base64 images, no script, no network, no CDN). Every value read from the run's files is
escaped for HTML text and attributes, whoever wrote the run folder. The page fits a 1400 px screen and a
390 px phone without sideways scrolling (wide tables scroll inside their own box).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from segcam.survey.crackmap import WIDTH_CLASSES_MM, class_labels, crack_colour, crack_map, width_class

__all__ = ["CRACK_ROWS", "IMAGE_ROWS", "MAP_PHOTOS", "QUEUE_ROWS", "Report", "write_report"]

#: Cracks shown in the review queue (the rest are in cracks.csv, ranked).
QUEUE_ROWS = 200
#: Images listed in the per-image table (the rest are in summary.csv).
IMAGE_ROWS = 2000
#: Cracks listed in the crack table (the rest are in cracks.csv / cracks.geojson).
CRACK_ROWS = 2000
#: Photos given a crack map by default (those with the most confirmed, then unreviewed, cracks first).
MAP_PHOTOS = 60
#: JPEG quality of the crack maps (the outlines and numbers stay sharp; a 640 px map is about 40 KB).
MAP_JPEG_QUALITY = 75


@dataclass(frozen=True)
class Report:
    """What ``segcam report`` wrote."""

    html: Path
    geojson: Path
    counts: dict[str, int]
    maps: int


def esc(value: Any) -> str:
    """Any value as HTML text that is also safe inside a quoted attribute."""
    return html.escape(str(value), quote=True)


def _f(value: Any, spec: str) -> str:
    """A number formatted, or the escaped text of a value that is not one (a hand-edited file)."""
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return esc(value) if value not in (None, "") else "-"


def _uri(arr: np.ndarray, ext: str = ".png") -> str:
    from segcam.utils.files import encode_image

    mime = "image/png" if ext == ".png" else "image/jpeg"
    data = base64.b64encode(encode_image(np.ascontiguousarray(arr), ext, MAP_JPEG_QUALITY)).decode()
    return f"data:{mime};base64,{data}"


def _histogram(widths: list[float], unit: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.hist(widths, bins=min(30, max(5, len(set(widths)))), color="#c0392b")
    ax.set_xlabel(f"maximum width ({unit})")
    ax.set_ylabel("cracks")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _map_rgb(t: dict[str, np.ndarray]) -> np.ndarray:
    from segcam.cam.overlay import heatmap

    return heatmap(t["map"].astype(np.float32) / 255.0, "inferno")


CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:1em auto;padding:0 1em;color:#222;
max-width:90em}h1{font-size:1.5em;overflow-wrap:anywhere}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left;overflow-wrap:anywhere}.wide{overflow-x:auto;max-width:100%}
.note{color:#666;font-size:.85em}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(17em,1fr));gap:.6em}
.card{border:1px solid #ddd;border-radius:4px;padding:.4em;font-size:.8em;min-width:0}
.thumbs{display:grid;grid-template-columns:repeat(3,1fr);gap:3px}
.thumbs img{width:100%;aspect-ratio:1;object-fit:contain;background:#eee;display:block}
.card p{margin:.3em 0 0;overflow-wrap:anywhere}
.maps{display:grid;grid-template-columns:repeat(auto-fill,minmax(20em,1fr));gap:.8em}
.maps figure{margin:0;min-width:0}.maps img{width:100%;height:auto;display:block}
.maps figcaption{font-size:.8em;overflow-wrap:anywhere}img.fit{max-width:100%;height:auto}
.v-confirmed{color:#008a3a;font-weight:600}.v-rejected{color:#607d8b}.v-unreviewed{color:#b35c00}
.counts{display:flex;flex-wrap:wrap;gap:.6em}.counts div{border:1px solid #ddd;border-radius:4px;padding:.4em .8em}
.counts b{display:block;font-size:1.4em}.key{display:inline-block;width:1em;height:.8em;vertical-align:middle}
nav ol{columns:2 14em}"""


#: Columns a crack's record must hold as whole numbers (its identity and box), and those read as numbers.
_WHOLE = ("crack", "x0", "y0", "x1", "y1", "area")
_NUMBERS = ("length", "mean_width", "median_width", "max_width", "orientation", "mean_prob", "min_prob",
            "review_score", "pixel_size", "length_mm", "mean_width_mm", "median_width_mm", "max_width_mm")


def _valid_rows(run: Any, warn: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[int]]:
    """The run's crack rows (and their indices) with whole-number boxes; other numbers not numeric become ``""``.

    A hand-edited or crafted manifest must not stop the report: a crack without a usable box is left out (one
    warning per photo), and a non-numeric value is shown as missing.
    """
    rows, index, bad = [], [], set()
    for i in run.cracks:
        r = dict(run.records[i])
        try:
            for k in _WHOLE:
                r[k] = int(r[k])
        except (KeyError, TypeError, ValueError):
            if r.get("name") not in bad:
                warn(f"{r.get('name')}: a crack record without a whole-number box or id is left out of the report")
            bad.add(r.get("name"))
            continue
        for k in _NUMBERS:
            try:
                if r.get(k) not in ("", None) and not np.isfinite(float(r[k])):
                    r[k] = ""
            except (TypeError, ValueError):
                r[k] = ""
        rows.append(r)
        index.append(i)
    return rows, index


def _mm_rows(rows: list[dict[str, Any]], pixel_size: float | None) -> bool:
    """Give every row ``_ps`` (its mm per pixel or None) and the ``*_mm`` columns; True when any row has them."""
    any_mm = False
    for r in rows:
        ps = pixel_size
        if ps is None:
            try:
                ps = float(r.get("pixel_size") or "nan")
            except (TypeError, ValueError):
                ps = float("nan")
            ps = ps if np.isfinite(ps) and ps > 0 else None
        r["_ps"] = ps
        if ps is not None:
            any_mm = True
            for key in ("length", "mean_width", "median_width", "max_width"):
                try:
                    r[f"{key}_mm"] = round(float(r[key]) * ps, 4)
                except (KeyError, TypeError, ValueError):
                    r[f"{key}_mm"] = ""
    return any_mm


def _num(r: dict[str, Any], key: str, mm: bool) -> float:
    try:
        return float(r.get(f"{key}_mm" if mm else key) or 0)
    except (TypeError, ValueError):
        return 0.0


def _verdict_html(v: str) -> str:
    return f"<span class='v-{esc(v)}'>{esc(v)}</span>"


def _summary(rows: list[dict[str, Any]], images: list[dict[str, Any]], failed: list[dict[str, Any]],
             summary: dict[str, Any], edges: Sequence[float], mm: bool) -> list[str]:
    parts = ["<h2 id='summary'>Summary</h2><div class='counts'>"]
    for label, n in (("cracks", len(rows)), ("verified (confirmed)", summary["confirmed"]),
                     ("rejected", summary["rejected"]), ("unreviewed", summary["unreviewed"]),
                     ("photos", len(images)), ("failed photos", len(failed))):
        parts.append(f"<div><b>{n}</b>{esc(label)}</div>")
    parts.append("</div>")
    if summary["stale"]:
        parts.append(f"<p class='note'>{summary['stale']} earlier verdicts no longer apply (their photo or crack "
                     "changed in a rerun); those cracks are unreviewed again.</p>")
    if not rows:
        return parts + ["<p><b>No cracks were predicted in this run.</b></p>"]
    if not mm:
        return parts + ["<p class='note'>Widths are in pixels: no pixel size is known, so cracks are not put in "
                        "width classes. Give one with <code>segcam report RUN --pixel-size MM</code>.</p>"]
    labels = class_labels(edges)
    parts.append("<h3>Width classes (maximum width, mm)</h3><div class='wide'><table><tr><th class='l'>class</th>"
                 "<th>confirmed cracks</th><th>confirmed length (mm)</th><th>all cracks</th><th>all length (mm)</th></tr>")
    for label in [*labels, ""]:
        these = [r for r in rows if r["_class"] == label]
        if label == "" and not these:
            continue
        conf = [r for r in these if r["verdict"] == "confirmed"]
        parts.append(f"<tr><td class='l'>{esc(label or 'no pixel size')}</td><td>{len(conf)}</td>"
                     f"<td>{sum(_num(r, 'length', True) for r in conf):.1f}</td><td>{len(these)}</td>"
                     f"<td>{sum(_num(r, 'length', True) for r in these):.1f}</td></tr>")
    parts.append("</table></div><p class='note'>Class edges " + esc(", ".join(f"{e:g}" for e in edges))
                 + " mm (<code>--width-classes</code>); defaults from common inspection limits (hairline under 0.1 mm, "
                 "ACI 224R Table 4.1, Eurocode 2 Table 7.1N).</p>")
    return parts


def _queue(run: Any, rows: list[dict[str, Any]], index: list[int], mm: bool) -> list[str]:
    unit = "mm" if mm else "px"
    ranked = sorted((i for i, r in enumerate(rows) if str(r.get("review_rank", "")).isdigit()),
                    key=lambda i: int(rows[i]["review_rank"]))
    parts = ["<h2 id='queue'>Review queue</h2><p class='note'>Highest review score first (the likeliest false "
             "cracks): photo crop | predicted crack | its own map.</p>"]
    if not ranked:
        return parts + ["<p>No review scores in this run (no cracks, or no review model).</p>"]
    parts.append("<div class='grid'>")
    for i in ranked[:QUEUE_ROWS]:
        r, t = rows[i], run.thumb(index[i])
        imgs = "".join(f"<img alt='{k}' src='{_uri(v)}'>" for k, v in
                       (("crop", t["photo"]), ("prediction", t["mask"]), ("map", _map_rgb(t))) if v is not None)
        truth = f" · truth {esc(r['truth'])}" if r.get("truth") not in ("", None) else ""
        cls = f" · {esc(r['_class'])} mm" if r.get("_class") else ""
        parts.append(f"<div class='card'><div class='thumbs'>{imgs}</div><p><b>#{esc(r['review_rank'])}</b> score "
                     f"{_f(r.get('review_score'), '.3f')} · {_verdict_html(r['verdict'])}{truth}</p>"
                     f"<p>{esc(r['name'])} crack {esc(r['crack'])}</p><p>length {_num(r, 'length', mm):.1f} {unit} · "
                     f"max width {_num(r, 'max_width', mm):.2f} {unit}{cls} · p {_f(r.get('mean_prob'), '.2f')} · "
                     f"evidence {esc(r.get('evidence_where', ''))}</p></div>")
    parts.append("</div>")
    if len(ranked) > QUEUE_ROWS:
        parts.append(f"<p class='note'>{len(ranked) - QUEUE_ROWS} more cracks in cracks.csv (column review_rank).</p>")
    return parts


def _by_photo(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The crack rows of each photo (photos in first-appearance order)."""
    per: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        per.setdefault(r["name"], []).append(r)
    return per


def _maps(run: Any, rows: list[dict[str, Any]], images: list[dict[str, Any]], folder: Path, limit: int) -> list[str]:
    per = _by_photo(rows)
    recs = {str(rec.get("name")): rec for rec in images}
    order = sorted(per, key=lambda n: (-sum(r["verdict"] == "confirmed" for r in per[n]),
                                       -sum(r["verdict"] == "unreviewed" for r in per[n]), n))
    parts = ["<h2 id='maps'>Crack maps</h2><p class='note'>Each crack outlined and numbered (its id in the crack "
             "table): " + "".join(f"<span class='key' style='background:rgb{crack_colour(v, 0.5)}'></span> {v} "
                                  for v in ("confirmed", "rejected"))
             + f"<span class='key' style='background:rgb{crack_colour('', 0.0)}'></span> unreviewed, likely crack "
             f"<span class='key' style='background:rgb{crack_colour('', 1.0)}'></span> unreviewed, check first.</p>"
             "<div class='maps'>"]
    for name in order[:limit]:
        labels, rec = run.labels_of(name), recs.get(name, {})
        if labels is None:
            continue
        pred = rec.get("prediction")
        pred_path = (folder / pred).resolve() if isinstance(pred, str) else None
        if pred_path is not None and pred_path.parent != folder.resolve():
            pred_path = None  # only the run's own files
        img, kind = crack_map(labels, per[name], rec.get("image"), rec.get("source_id"), pred_path)
        note = "" if kind == "photo" else " (on the prediction: the photo is not where the run read it, or changed)"
        parts.append(f"<figure><img alt='crack map of {esc(name)}' src='{_uri(img, '.jpg')}'><figcaption>"
                     f"{esc(name)}: {len(per[name])} crack{'s' if len(per[name]) != 1 else ''}{esc(note)}</figcaption></figure>")
    parts.append("</div>")
    if len(order) > limit:
        parts.append(f"<p class='note'>{len(order) - limit} more photos with cracks (<code>--maps N</code> draws more).</p>")
    return parts


def _table(rows: list[dict[str, Any]], mm: bool) -> list[str]:
    unit = "mm" if mm else "px"
    truth = any(r.get("truth") not in ("", None) for r in rows)
    head = ["photo", "crack", "verdict", f"length ({unit})", f"mean width ({unit})", f"max width ({unit})",
            "width class", "p", "review rank", *(["truth"] if truth else [])]
    parts = ["<h2 id='cracks'>Cracks</h2><div class='wide'><table><tr>"
             + "".join(f"<th{' class=l' if h == 'photo' else ''}>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows[:CRACK_ROWS]:
        cells = [f"<td class='l'>{esc(r['name'])}</td>", f"<td>{esc(r['crack'])}</td>",
                 f"<td>{_verdict_html(r['verdict'])}</td>", f"<td>{_num(r, 'length', mm):.1f}</td>",
                 f"<td>{_num(r, 'mean_width', mm):.2f}</td>", f"<td>{_num(r, 'max_width', mm):.2f}</td>",
                 f"<td>{esc(r.get('_class') or '-')}</td>", f"<td>{_f(r.get('mean_prob'), '.2f')}</td>",
                 f"<td>{esc(r.get('review_rank', ''))}</td>", *([f"<td>{esc(r.get('truth', ''))}</td>"] if truth else [])]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></div>")
    if len(rows) > CRACK_ROWS:
        parts.append(f"<p class='note'>{len(rows) - CRACK_ROWS} more cracks in cracks.csv and cracks.geojson.</p>")
    widths = [_num(r, "max_width", mm) for r in rows]
    parts.append(f"<p><img class='fit' alt='width histogram' src='{_histogram(widths, unit)}'></p>")
    return parts


def _atlas(folder: Path) -> list[str]:
    atlas_json, atlas_png = folder / "atlas" / "atlas.json", folder / "atlas" / "atlas.png"
    parts = ["<h2 id='atlas'>Concept atlas</h2>"]
    if not (atlas_json.is_file() and atlas_png.is_file()):
        return parts + [f"<p>No atlas yet: run <code>segcam atlas {esc(folder)}</code> first.</p>"]
    try:
        data = json.loads(atlas_json.read_text(encoding="utf-8"))
        concepts = [c for c in data.get("concepts", []) if isinstance(c, dict)]
    except (OSError, ValueError, AttributeError) as exc:
        return parts + [f"<p>{esc(atlas_json)} cannot be read ({esc(exc)}); rerun <code>segcam atlas</code>.</p>"]

    def pct(v: Any) -> str:
        return "-" if v is None else (f"{100 * v:.0f} %" if isinstance(v, (int, float)) else esc(v))

    parts.append("<div class='wide'><table><tr><th>concept</th><th>cracks</th><th>false-positive share</th><th>mean p</th>"
                 "<th>mean length (px)</th><th>mean width (px)</th></tr>" + "".join(
                     f"<tr><td>C{esc(c.get('concept'))}</td><td>{esc(c.get('members'))}</td>"
                     f"<td>{pct(c.get('false_positive_share'))}</td><td>{_f(c.get('mean_prob'), '.2f')}</td>"
                     f"<td>{_f(c.get('mean_length'), '.1f')}</td><td>{_f(c.get('mean_width'), '.2f')}</td></tr>"
                     for c in concepts) + "</table></div>")
    from PIL import Image

    try:
        with Image.open(atlas_png) as im:
            im = im.convert("RGB")
            im.thumbnail((1400, 1400 * 4))
            parts.append(f"<p><img class='fit' alt='concept atlas' src='{_uri(np.asarray(im))}'></p>")
    except OSError as exc:
        parts.append(f"<p>{esc(atlas_png)} cannot be read ({esc(exc)}).</p>")
    return parts


def _facts(man: dict[str, Any], images: list[dict[str, Any]], failed: list[dict[str, Any]], skipped: list[str]) -> list[str]:
    model = man.get("model") if isinstance(man.get("model"), dict) else {}
    layers = ", ".join(str(x.get("requested", x)) if isinstance(x, dict) else str(x) for x in man.get("layers") or [])
    facts = [("model", f"{model.get('name', '?')} (tag {model.get('tag') or '-'})"),
             ("weights sha256", model.get("weights_sha256") or "-"), ("method", man.get("method", "?")),
             ("layers", layers or "-"), ("target", man.get("target", "?")), ("images", len(images)),
             ("failed images", len(failed)),
             ("segcam", (man.get("versions") or {}).get("segcam", "?") if isinstance(man.get("versions"), dict) else "?")]
    parts = ["<h2 id='run'>Run</h2><div class='wide'><table>" + "".join(
        f"<tr><th class='l'>{esc(k)}</th><td class='l'>{esc(v)}</td></tr>" for k, v in facts) + "</table></div>"]
    if failed:
        parts.append("<ul>" + "".join(f"<li>{esc(r.get('image', r.get('name')))}: {esc(r.get('error', ''))}</li>"
                                      for r in failed[:50]) + "</ul>")
    if skipped:
        parts.append(f"<p class='note'>Left out (damaged crack files): {esc(', '.join(skipped[:50]))}.</p>")
    return parts


def _per_image(rows: list[dict[str, Any]], images: list[dict[str, Any]], mm: bool) -> list[str]:
    unit = "mm" if mm else "px"
    per = _by_photo(rows)
    parts = [f"<h2 id='images'>Per image</h2><details><summary>{len(images)} images</summary><div class='wide'><table>"
             f"<tr><th class='l'>image</th><th>cracks</th><th>confirmed</th><th>total length ({unit})</th>"
             f"<th>max width ({unit})</th></tr>"]
    for rec in images[:IMAGE_ROWS]:
        cs = per.get(str(rec.get("name", "")), [])
        parts.append(f"<tr><td class='l'>{esc(rec.get('name'))}</td><td>{len(cs)}</td>"
                     f"<td>{sum(c['verdict'] == 'confirmed' for c in cs)}</td>"
                     f"<td>{sum(_num(c, 'length', mm) for c in cs):.1f}</td>"
                     f"<td>{max((_num(c, 'max_width', mm) for c in cs), default=0.0):.2f}</td></tr>")
    parts.append("</table></div></details>")
    if len(images) > IMAGE_ROWS:
        parts.append(f"<p class='note'>{len(images) - IMAGE_ROWS} more images in summary.csv.</p>")
    return parts


def write_report(folder: str | Path, out: str | Path | None = None, pixel_size: float | None = None,
                 width_classes: Sequence[float] = WIDTH_CLASSES_MM, maps: int = MAP_PHOTOS,
                 warn: Callable[[str], None] | None = None) -> Report:
    """Write ``report.html`` (or ``out``), ``cracks.geojson`` and ``verdicts.csv`` for a run folder.

    Args:
        folder: The run (``segcam survey`` or ``segcam explain`` with per-crack records).
        out: The HTML file (default ``RUN/report.html``).
        pixel_size: Millimetres per pixel for every photo (default: each crack's ``pixel_size`` column, if any).
        width_classes: Class edges of the maximum width in mm.
        maps: How many photos get a crack map.
        warn: Called with one line per photo left out (damaged crack file, no labels).

    Raises:
        segcam.survey.atlas.AtlasError: A run without per-crack records (the message names the command).
        segcam.survey.verdicts.VerdictError: A run without ``cracks.csv``.
    """
    from segcam.survey.atlas import load_run_cracks
    from segcam.survey.geojson import write_geojson
    from segcam.survey.review import rank_rows
    from segcam.survey.verdicts import load_review, summarise, write_verdicts_csv
    from segcam.utils.files import atomic_write

    folder = Path(folder)
    run = load_run_cracks(folder, warn=warn)
    state = load_review(folder)
    man = run.manifest
    images = [r for r in man.get("images", []) if isinstance(r, dict)]
    failed = [r for r in images if r.get("status", "ok") != "ok"]
    rows, index = _valid_rows(run, warn or (lambda m: None))
    rows = rank_rows(rows)
    mm = _mm_rows(rows, pixel_size)
    for r in rows:
        r["verdict"] = state.verdict_of(str(r["name"]), r["crack"])
        r["_class"] = width_class(r.get("max_width_mm"), width_classes) if r["_ps"] else ""
    summary = summarise(state)
    title = f"segcam report: {esc(folder.name)}"
    sections = [("summary", "Summary"), ("queue", "Review queue"), ("maps", "Crack maps"), ("cracks", "Cracks"),
                ("atlas", "Concept atlas"), ("run", "Run"), ("images", "Per image")]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{title}</title>"
             f"<style>{CSS}</style></head><body><h1>{title}</h1><nav><ol>"
             + "".join(f"<li><a href='#{k}'>{v}</a></li>" for k, v in sections) + "</ol></nav>"]
    parts += _summary(rows, images, failed, summary, width_classes, mm)
    parts += _queue(run, rows, index, mm)
    parts += _maps(run, rows, images, folder, maps)
    if rows:
        parts += _table(rows, mm)
    parts += _atlas(folder)
    parts += _facts(man, images, failed, run.skipped)
    parts += _per_image(rows, images, mm)
    parts.append("</body></html>")
    out = Path(out) if out is not None else folder / "report.html"
    text = "\n".join(parts)
    atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
    geo = write_geojson(run.labels_of, rows, folder / "cracks.geojson", pixel_size=lambda r: r["_ps"],
                        warn=warn or (lambda m: None))
    write_verdicts_csv(state)
    counts = {k: summary[k] for k in ("confirmed", "rejected", "unreviewed")}
    return Report(out, geo, {"cracks": len(rows), **counts}, min(maps, len({r["name"] for r in rows})))
