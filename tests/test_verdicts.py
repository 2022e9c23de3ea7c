"""Verdicts on a run's cracks: the journal, `segcam review --import/--summary`, stale verdicts, and bad files."""

from __future__ import annotations

import csv
import json
import multiprocessing

import pytest

from segcam.cli import main
from segcam.survey.verdicts import JOURNAL, VerdictError, import_verdicts, load_review, record, summarise


@pytest.fixture
def run(run_copy):
    return run_copy


def _cracks(run) -> list[tuple[str, int]]:
    with open(run / "cracks.csv", newline="") as fh:
        return [(r["name"], int(r["crack"])) for r in csv.DictReader(fh)]


def _csv(run) -> dict[tuple[str, int], str]:
    with open(run / "verdicts.csv", newline="") as fh:
        return {(r["name"], int(r["crack"])): r["verdict"] for r in csv.DictReader(fh)}


def _write(path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_import_applies_verdicts_and_the_summary_counts_them(run, tmp_path, capsys) -> None:
    cracks = _cracks(run)
    assert len(cracks) >= 5
    (a, ka), (b, kb) = cracks[0], cracks[1]
    f = _write(tmp_path / "v.csv", f"name,crack,verdict\n{a},{ka},confirmed\n{b},{kb},rejected\n")
    assert main(["review", str(run), "--import", f, "--reviewer", "ann"]) == 0
    assert "2 verdicts imported" in capsys.readouterr().err
    assert _csv(run) == {(a, ka): "confirmed", (b, kb): "rejected"}
    assert main(["review", str(run), "--summary"]) == 0
    table = dict(line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith(" "))
    assert table == {"cracks": str(len(cracks)), "confirmed": "1", "rejected": "1",
                     "unreviewed": str(len(cracks) - 2), "skipped": "0", "missed": "0"}
    s = summarise(load_review(run))
    assert (s["confirmed"], s["rejected"], s["unreviewed"], s["by_reviewer"]) == (1, 1, len(cracks) - 2, {"ann": 2})
    # the same file again changes nothing and says so
    assert main(["review", str(run), "--import", f]) == 0
    assert "0 verdicts imported" in capsys.readouterr().err
    assert len((run / JOURNAL).read_text().splitlines()) == 3  # two events and the batch's closing line


def test_bom_crlf_and_semicolons_are_read_and_duplicates_counted(run, tmp_path, capsys) -> None:
    (a, ka), (b, kb) = _cracks(run)[:2]
    f = _write(tmp_path / "v.csv", f"\ufeffName;Crack;Verdict\r\n{a};{ka};Confirmed\r\n{a};{ka};confirmed\r\n"
                                   f"{b};{kb};rejected\r\n", "utf-8")
    assert main(["review", str(run), "--import", f]) == 0
    assert "1 duplicate rows applied once" in capsys.readouterr().err
    assert _csv(run) == {(a, ka): "confirmed", (b, kb): "rejected"}


@pytest.mark.parametrize("rows, says", [
    ("{a},{ka},confirmd", "line 2: verdict 'confirmd' is not confirmed or rejected (did you mean 'confirmed'?)"),
    ("nosuchphoto,1,confirmed", "line 2: photo 'nosuchphoto' is not a photo of this run"),
    ("{a},999,confirmed", "line 2: photo '{a}' has no such crack (crack 999)"),
    ("{a},{ka},confirmed\n{a},{ka},rejected", "line 3: crack {ka} of '{a}' is rejected here but confirmed on line 2"),
    ("{a},x,confirmed", "line 2: crack 'x' is not a crack id"),
    ("{a};{ka};confirmed", "line 2: 1 fields where the header has 3"),
])
def test_a_bad_verdicts_file_names_the_line_and_applies_nothing(run, tmp_path, capsys, rows, says) -> None:
    a, ka = _cracks(run)[0]
    f = _write(tmp_path / "v.csv", f"name,crack,verdict\n{rows.format(a=a, ka=ka)}\n")
    assert main(["review", str(run), "--import", f]) == 2
    err = capsys.readouterr().err
    assert says.format(a=a, ka=ka) in err and "nothing imported" in err and "Traceback" not in err
    assert not (run / JOURNAL).exists()


def test_a_file_without_the_columns_or_a_run_without_cracks_csv(run, tmp_path, capsys) -> None:
    f = _write(tmp_path / "v.csv", "photo,id,decision\nx,1,confirmed\n")
    assert main(["review", str(run), "--import", f]) == 2
    assert "line 1: missing column(s) crack, name, verdict" in capsys.readouterr().err
    (run / "cracks.csv").unlink()
    assert main(["review", str(run)]) == 2
    assert f"has no cracks.csv; make one with `segcam survey PHOTOS --out {run}`" in capsys.readouterr().err


def test_a_cut_short_import_applies_nothing_and_a_torn_line_is_skipped(run) -> None:
    (a, ka), (b, kb) = _cracks(run)[:2]
    state = load_review(run)
    c = {x.ident: x for x in state.cracks}
    ev = {"name": a, "crack": ka, "verdict": "confirmed", "source_id": c[(a, ka)].source_id, "crack_key": c[(a, ka)].key}
    lines = [json.dumps({**ev, "batch": "b1"}),  # a batch whose closing line never came
             json.dumps({**ev, "name": b, "crack": kb, "verdict": "rejected", "source_id": c[(b, kb)].source_id,
                         "crack_key": c[(b, kb)].key}),
             '{"name": "' + a + '", "cra']  # torn by a crash mid-line
    (run / JOURNAL).write_text("\n".join(lines))
    state = load_review(run)
    assert state.verdict_of(a, ka) == "unreviewed" and state.verdict_of(b, kb) == "rejected"
    assert state.unread_lines == 1
    # appending after a torn line still works: the new event is on a line of its own
    state = record(run, a, ka, "rejected")
    assert state.verdict_of(a, ka) == "rejected" and state.unread_lines == 1


def test_undo_and_skip(run) -> None:
    a, ka = _cracks(run)[0]
    state = load_review(run)
    first = state.next_index(0)
    state = record(run, a, ka, "skipped")
    assert state.verdict_of(a, ka) == "unreviewed" and (a, ka) in state.skipped
    state = record(run, a, ka, "confirmed")
    state = record(run, a, ka, "rejected")
    assert state.verdict_of(a, ka) == "rejected"
    state = record(run, a, ka, "undo")
    assert state.verdict_of(a, ka) == "confirmed"
    state = record(run, a, ka, "undo")
    state = record(run, a, ka, "undo")
    assert state.verdict_of(a, ka) == "unreviewed" and (a, ka) not in state.skipped
    assert state.next_index(0) == first
    with pytest.raises(VerdictError, match="verdict 'maybe' is not one of"):
        record(run, a, ka, "maybe")


def test_a_rerun_that_changes_a_photo_or_a_crack_makes_its_verdict_stale(run, tmp_path, capsys) -> None:
    (a, ka), (b, kb) = _cracks(run)[:2]
    f = _write(tmp_path / "v.csv", f"name,crack,verdict\n{a},{ka},confirmed\n{b},{kb},rejected\n")
    import_verdicts(run, f)
    man = json.loads((run / "manifest.json").read_text())
    for rec in man["images"]:
        if rec["name"] == a:
            rec["source_id"] = "1:2"  # the photo was replaced
    (run / "manifest.json").write_text(json.dumps(man))
    rows = list(csv.DictReader(open(run / "cracks.csv", newline="")))
    for r in rows:
        if (r["name"], int(r["crack"])) == (b, kb):
            r["area"] = str(int(r["area"]) + 1)  # the crack came out differently
    with open(run / "cracks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    state = load_review(run)
    assert state.verdicts == {} and state.stale == 2
    assert main(["review", str(run)]) == 0
    assert "2 earlier verdicts no longer apply" in capsys.readouterr().err


def _hammer(args) -> None:
    run, cracks, verdict = args
    for name, k in cracks * 10:
        record(run, name, k, verdict)


def test_two_writers_at_once_lose_nothing(run) -> None:
    cracks = _cracks(run)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(_hammer, [(run, cracks, "confirmed"), (run, cracks, "rejected")])
    lines = (run / JOURNAL).read_text().splitlines()
    assert len(lines) == 2 * 10 * len(cracks) and all(json.loads(x)["verdict"] for x in lines)
    state = load_review(run)
    assert state.reviewed == len(cracks) and state.unread_lines == 0
    assert set(_csv(run)) == set(cracks)
