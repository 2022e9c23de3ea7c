"""Verdicts: what a person decided about each predicted crack of a run, saved the moment it is decided.

Storage (in the run folder):

* ``verdicts.jsonl``, the **journal**: one JSON event per line, only ever appended (``O_APPEND``, one
  ``write`` per event, then ``fsync``), so two browser tabs or a tab and ``segcam review --import`` writing at
  once lose nothing, and a verdict that was clicked survives a crash. Events are ``confirmed``, ``rejected``,
  ``skipped`` (looked at, left for later) and ``undo`` (takes back that crack's latest event). An import is one
  batch: its events count only once its closing line is in the journal, so a cut-short import applies nothing.
* ``verdicts.csv``, the current verdicts (``name, crack, verdict, time, reviewer, note``), rebuilt from the
  journal after every change (temporary file, then rename): the file other tools read.

A verdict belongs to a crack of a photo with a given source identity: each event records the photo's
``source_id`` (size and modification time, from the manifest) and the crack's box and area. When a rerun changes
that photo or that crack, its verdict no longer applies; the crack is unreviewed again, and
:func:`summarise` counts such *stale* verdicts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["DECISIONS", "JOURNAL", "VERDICTS_CSV", "RunCrack", "ReviewState", "Verdict", "VerdictError",
           "append_events", "import_verdicts", "load_review", "read_events", "read_run_cracks", "record", "source_ids",
           "summarise", "verdict_rows", "write_verdicts_csv"]

JOURNAL = "verdicts.jsonl"
VERDICTS_CSV = "verdicts.csv"
#: The verdicts a person gives (``skipped`` is recorded too, but decides nothing).
DECISIONS = ("confirmed", "rejected")
_EVENTS = (*DECISIONS, "skipped", "undo")
#: Journal events of :mod:`segcam.survey.missed` (marks of cracks the network missed), skipped here.
MISSED_EVENTS = ("missed", "unmark")
_CSV_FIELDS = ("name", "crack", "verdict", "time", "reviewer", "note")
#: Longest reviewer name / note kept (a journal line stays one small write).
MAX_TEXT = 500


class VerdictError(ValueError):
    """A run or a verdicts file that cannot be used (the message names the file, the line and the fix)."""


@dataclass(frozen=True)
class RunCrack:
    """One predicted crack of a run, as ``cracks.csv`` lists it, with its identity for verdicts."""

    name: str
    crack: int
    source_id: str
    key: str
    row: dict[str, Any] = field(compare=False, repr=False)

    @property
    def ident(self) -> tuple[str, int]:
        return self.name, self.crack


@dataclass(frozen=True)
class Verdict:
    """The current verdict on one crack."""

    name: str
    crack: int
    verdict: str
    time: str
    reviewer: str = ""
    note: str = ""


@dataclass
class ReviewState:
    """A run's cracks in queue order and the verdicts that apply to them now."""

    folder: Path
    cracks: list[RunCrack]
    verdicts: dict[tuple[str, int], Verdict]
    skipped: set[tuple[str, int]]
    stale: int
    unread_lines: int = 0

    def verdict_of(self, name: str, crack: int) -> str:
        """``confirmed``, ``rejected`` or ``unreviewed``."""
        v = self.verdicts.get((name, int(crack)))
        return v.verdict if v is not None else "unreviewed"

    @property
    def reviewed(self) -> int:
        return len(self.verdicts)

    def next_index(self, start: int = 0) -> int | None:
        """The crack to show next: from ``start`` on, the first with no verdict that was not skipped.

        Else the first without a verdict anywhere (skipped ones come round again), else None (all reviewed).
        """
        for i in range(start, len(self.cracks)):
            c = self.cracks[i].ident
            if c not in self.verdicts and c not in self.skipped:
                return i
        return next((i for i, c in enumerate(self.cracks) if c.ident not in self.verdicts), None)


def read_run_cracks(folder: str | Path) -> list[RunCrack]:
    """The run's cracks from ``cracks.csv`` in review-queue order (``review_rank``, then file order).

    Raises:
        VerdictError: No ``cracks.csv`` (the message says how to make one) or one without the needed columns.
    """
    folder = Path(folder)
    path = folder / "cracks.csv"
    if not path.is_file():
        raise VerdictError(f"{folder} has no cracks.csv; make one with `segcam survey PHOTOS --out {folder}` "
                           "(or `segcam explain ... --out` with per-crack records)")
    sources = source_ids(folder)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "crack", "x0", "y0", "x1", "y1", "area"} - set(reader.fieldnames or [])
        if missing:
            raise VerdictError(f"{path} lacks the columns {', '.join(sorted(missing))}; it is not a segcam cracks.csv")
        out = []
        for row in reader:
            try:
                crack = int(row["crack"])
            except ValueError:
                continue  # a missed-crack row or a hand-edited line: not a predicted crack
            key = ",".join(str(row[k]) for k in ("x0", "y0", "x1", "y1", "area"))
            out.append(RunCrack(row["name"], crack, sources.get(row["name"], ""), key, row))

    def rank(c: RunCrack) -> int:
        r = c.row.get("review_rank", "")
        return int(r) if str(r).isdigit() else 10**9

    return sorted(out, key=rank)  # sorted() is stable: unranked rows keep the file's order


def source_ids(folder: Path) -> dict[str, str]:
    """Each photo's source identity (size and modification time) as the run's manifest records it."""
    try:
        man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    images = man.get("images", []) if isinstance(man, dict) else []
    return {str(r["name"]): str(r.get("source_id", "")) for r in images if isinstance(r, dict) and "name" in r}


def read_events(folder: Path) -> tuple[list[dict[str, Any]], int]:
    """The journal's events (batches only when closed) and the number of lines that could not be read."""
    path = folder / JOURNAL
    if not path.is_file():
        return [], 0
    events, bad, pending, closed = [], 0, {}, set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                bad += 1  # a line cut short by a crash: the event it held was never confirmed to anyone
                continue
            if not isinstance(ev, dict):
                bad += 1
            elif "batch_end" in ev:
                closed.add(ev["batch_end"])
            elif ev.get("batch"):
                pending.setdefault(ev["batch"], []).append(len(events))
                events.append(ev)
            else:
                events.append(ev)
    drop = {i for b, idx in pending.items() if b not in closed for i in idx}
    return [e for i, e in enumerate(events) if i not in drop], bad


def load_review(folder: str | Path) -> ReviewState:
    """The run's cracks and the verdicts that apply to them now (journal replayed, stale ones counted).

    Raises:
        VerdictError: As :func:`read_run_cracks`.
    """
    folder = Path(folder)
    return _replay(folder, read_run_cracks(folder))


def _replay(folder: Path, cracks: list[RunCrack]) -> ReviewState:
    """:func:`load_review` for cracks already read (a verdict just appended needs only the journal again)."""
    current = {c.ident: c for c in cracks}
    events, bad = read_events(folder)
    stacks: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for ev in events:
        if ev.get("verdict") in MISSED_EVENTS:
            continue  # a missed crack's mark (segcam.survey.missed)
        try:
            ident = (str(ev["name"]), int(ev["crack"]))
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        kind = ev.get("verdict")
        if kind == "undo":
            if stacks.get(ident):
                stacks[ident].pop()
        elif kind in _EVENTS:
            stacks.setdefault(ident, []).append(ev)
    verdicts, skipped, stale = {}, set(), 0
    for ident, stack in stacks.items():
        if not stack:
            continue
        ev, c = stack[-1], current.get(ident)
        if c is None or ev.get("source_id", "") != c.source_id or ev.get("crack_key") != c.key:
            stale += ev["verdict"] in DECISIONS
            continue
        if ev["verdict"] == "skipped":
            skipped.add(ident)
        else:
            verdicts[ident] = Verdict(ident[0], ident[1], ev["verdict"], str(ev.get("time", "")),
                                      str(ev.get("reviewer", "")), str(ev.get("note", "")))
    return ReviewState(folder, cracks, verdicts, skipped, stale, bad)


def _event(c: RunCrack, verdict: str, reviewer: str = "", note: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": c.name, "crack": c.crack, "verdict": verdict,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reviewer": str(reviewer)[:MAX_TEXT],
            "note": str(note)[:MAX_TEXT], "source_id": c.source_id, "crack_key": c.key, **extra}


def append_events(folder: Path, events: Sequence[dict[str, Any]]) -> None:
    """Append events to the journal in one write (``O_APPEND``: concurrent writers never interleave a line)."""
    data = "".join(json.dumps(e, ensure_ascii=True) + "\n" for e in events).encode("ascii")
    fd = os.open(folder / JOURNAL, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and os.pread(fd, 1, end - 1) != b"\n":
            data = b"\n" + data  # a line torn by a crash: the new events start on a line of their own
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_verdicts_csv(state: ReviewState) -> None:
    """Rewrite ``RUN/verdicts.csv`` (the current verdicts, queue order) from a state (temporary file, then rename)."""
    from segcam.utils.files import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in state.cracks:
        v = state.verdicts.get(c.ident)
        if v is not None:
            writer.writerow({k: getattr(v, k) for k in _CSV_FIELDS})
    text = buf.getvalue()
    atomic_write(state.folder / VERDICTS_CSV, lambda p: p.write_text(text, encoding="utf-8"))


def record(folder: str | Path, name: str, crack: int, verdict: str, reviewer: str = "",
           note: str = "") -> ReviewState:
    """Save one event (``confirmed``, ``rejected``, ``skipped`` or ``undo``) for a crack; returns the new state.

    Raises:
        VerdictError: An unknown event or a crack that is not in the run.
    """
    folder = Path(folder)
    if verdict not in _EVENTS:
        raise VerdictError(f"verdict {verdict!r} is not one of {', '.join(_EVENTS)}")
    cracks = read_run_cracks(folder)
    c = next((c for c in cracks if c.ident == (str(name), int(crack))), None)
    if c is None:
        raise VerdictError(f"{folder} has no crack {crack} of photo {name!r} (names and ids are cracks.csv's)")
    append_events(folder, [_event(c, verdict, reviewer, note)])
    state = _replay(folder, cracks)
    write_verdicts_csv(state)
    return state


def _sniff(text: str, path: Path) -> csv.Dialect | type[csv.Dialect]:
    header = text.splitlines()[0] if text.strip() else ""
    delims = [d for d in (",", ";", "\t") if d in header]
    if not delims:
        raise VerdictError(f"{path} line 1: expected the header name,crack,verdict (comma-, semicolon- or "
                           f"tab-separated), got {header[:80]!r}")

    class Dialect(csv.excel):
        delimiter = delims[0]

    return Dialect


def _parse_rows(path: Path, known: dict[tuple[str, int], RunCrack]) -> tuple[dict[tuple[str, int], tuple[int, str]], int]:
    """Rows of a verdicts file by crack: (line, verdict); and the number of exact duplicate rows."""
    import difflib

    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Excel's UTF-8 CSV) is not part of the header
    except (OSError, UnicodeDecodeError) as exc:
        raise VerdictError(f"cannot read {path} as UTF-8 text ({exc})") from None
    dialect = _sniff(text, path)
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    missing = {"name", "crack", "verdict"} - set(fields)
    if missing:
        raise VerdictError(f"{path} line 1: missing column(s) {', '.join(sorted(missing))}; the header must name "
                           "name,crack,verdict")
    reader.fieldnames = fields
    rows: dict[tuple[str, int], tuple[int, str]] = {}
    errors, dups = [], 0
    photos = {n for n, _ in known}
    for row in reader:
        line = reader.line_num
        name, crack_s, verdict = (str(row.get(k) or "").strip() for k in ("name", "crack", "verdict"))
        verdict = verdict.lower()
        if not (name or crack_s or verdict):
            continue  # a blank line
        if None in row.values() or None in row:
            errors.append(f"line {line}: {len([v for v in row.values() if v is not None])} fields where the header has "
                          f"{len(fields)} (separated by {dialect.delimiter!r}, as the header is)")
            continue
        if verdict not in DECISIONS:
            near = difflib.get_close_matches(verdict, DECISIONS, 1)
            errors.append(f"line {line}: verdict {verdict!r} is not confirmed or rejected"
                          + (f" (did you mean {near[0]!r}?)" if near else ""))
            continue
        try:
            ident = (name, int(crack_s))
        except ValueError:
            errors.append(f"line {line}: crack {crack_s!r} is not a crack id (a whole number from cracks.csv)")
            continue
        if ident not in known:
            errors.append(f"line {line}: photo {name!r} has no such crack (crack {ident[1]})" if name in photos
                          else f"line {line}: photo {name!r} is not a photo of this run")
            continue
        if ident in rows:
            first, before = rows[ident]
            if before != verdict:
                errors.append(f"line {line}: crack {ident[1]} of {name!r} is {verdict} here but {before} on line {first}")
            else:
                dups += 1
            continue
        rows[ident] = (line, verdict)
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise VerdictError(f"{path}: nothing imported; fix these rows:\n  " + "\n  ".join(errors[:10]) + more)
    return rows, dups


def import_verdicts(folder: str | Path, path: str | Path, reviewer: str = "") -> tuple[ReviewState, dict[str, int]]:
    """Apply a CSV of verdicts (columns ``name,crack,verdict``; verdict ``confirmed`` or ``rejected``) as one batch.

    A UTF-8 BOM, CRLF line ends and semicolon- or tab-separated files are read as they are. Every row is checked
    first: unknown photos or cracks, other verdict words and conflicting rows (the same crack twice with
    different verdicts) are errors naming their lines, and then nothing is applied; exact duplicate rows are
    applied once and counted.

    Returns:
        The new state, and counts ``{"applied", "duplicates", "unchanged"}``.

    Raises:
        VerdictError: As above, or a run without ``cracks.csv``.
    """
    folder, path = Path(folder), Path(path)
    state = load_review(folder)
    known = {c.ident: c for c in state.cracks}
    rows, dups = _parse_rows(path, known)
    batch = uuid.uuid4().hex
    events = [_event(known[ident], verdict, reviewer, "", batch=batch, via="import")
              for ident, (_, verdict) in rows.items() if state.verdict_of(*ident) != verdict]
    if events:
        append_events(folder, [*events, {"batch_end": batch, "count": len(events)}])
    state = _replay(folder, state.cracks)
    write_verdicts_csv(state)
    return state, {"applied": len(events), "duplicates": dups, "unchanged": len(rows) - len(events)}


def summarise(state: ReviewState) -> dict[str, Any]:
    """Counts for a summary: cracks, confirmed, rejected, unreviewed, skipped, stale, by reviewer."""
    counts = {d: 0 for d in DECISIONS}
    by_reviewer: dict[str, int] = {}
    for v in state.verdicts.values():
        counts[v.verdict] += 1
        by_reviewer[v.reviewer or "-"] = by_reviewer.get(v.reviewer or "-", 0) + 1
    return {"cracks": len(state.cracks), **counts, "unreviewed": len(state.cracks) - len(state.verdicts),
            "skipped": len(state.skipped), "stale": state.stale, "unread_lines": state.unread_lines,
            "by_reviewer": by_reviewer}


def verdict_rows(state: ReviewState) -> Iterable[dict[str, Any]]:
    """Each crack's ``cracks.csv`` row with its ``verdict`` (queue order)."""
    for c in state.cracks:
        yield {**c.row, "verdict": state.verdict_of(*c.ident)}
