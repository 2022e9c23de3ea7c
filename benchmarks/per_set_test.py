"""Per-set test scores of shipped weights: every set with a test split, full frames (issue: crack-general weights).

    python benchmarks/per_set_test.py hrsegnet_b16.deepcrack hrsegnet_b16.mix hrsegnet_b48.deepcrack hrsegnet_b48.mix
    python benchmarks/per_set_test.py hrsegnet_b48.mix --scale 2     # test-time scale (segcam evaluate --scale)

Runs `segcam evaluate --data mix:test` for each tag (its JSON kept in results/per_set/ and reused until the
weights change), then prints one markdown table: mIoU, crack IoU, recall and F1 per set, and the mean over the
sets. `--from-cards` instead reads the scores the release command wrote into each model card (a quick table,
measured when the weights were released; tags whose card lacks a set are evaluated).

    python benchmarks/per_set_test.py --from-cards hrsegnet_b16.mix hrsegnet_b48.mix
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from segcam.training.release import EVAL_SETS as SETS  # the sets every model card reports

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "per_set"


def evaluate(tag: str, threads: int, scale: float = 1.0, from_cards: bool = False) -> dict:
    from segcam.models.zoo import create_model, get_model_spec, split_tag

    name, tg = split_tag(tag)
    card = get_model_spec(name).tag_info(tg or get_model_spec(name).default_tag)
    if from_cards and scale == 1 and all(s in card.get("metrics", {}) for s in SETS):
        return {"results": card["metrics"]}
    path = OUT / (f"{tag}.json" if scale == 1 else f"{tag}@{scale:g}.json")
    sha = create_model(tag).weights_sha256
    # stale when the weights changed, by content: file times say nothing after a fresh clone
    if not path.is_file() or json.loads(path.read_text()).get("weights_sha256") != sha:
        subprocess.run([sys.executable, "-m", "segcam", "evaluate", "--model", tag, "--data", "mix:test",
                        "--threads", str(threads), "--scale", str(scale), "--json", str(path)], check=True)
    return json.loads(path.read_text())


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tags", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="test-time scale (segcam evaluate --scale)")
    ap.add_argument("--from-cards", action="store_true",
                    help="read the scores the model cards hold instead of evaluating (quick; scale 1 only)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    head = " | ".join(f"{s.split(':')[0]} mIoU / crack IoU / recall / F1" for s in SETS)
    print(f"| weights | {head} | mean mIoU |")
    print("|---|" + "---|" * (len(SETS) + 1))
    for tag in args.tags:
        res = evaluate(tag, args.threads, args.scale, args.from_cards)["results"]
        cells = [f"{res[s]['miou']:.3f} / {res[s]['crack_iou']:.3f} / {res[s]['recall']:.3f} / {res[s]['f1']:.3f}"
                 for s in SETS]
        mean = sum(res[s]["miou"] for s in SETS) / len(SETS)
        label = tag if args.scale == 1 else f"{tag}, scale {args.scale:g}"
        print(f"| {label} | {' | '.join(cells)} | {mean:.3f} |")


if __name__ == "__main__":
    main()
