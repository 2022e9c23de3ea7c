"""App responsiveness: switching the shown layer after the first computation (target <= 0.2 s).

Measures, in one run on a real example photo: the first computation of all layers (one pass), then
(a) re-rendering another layer from the cached result (``segcam.app.core.render``) and (b) a full
Streamlit rerun after changing the "Shown layer" radio (AppTest, no browser). Prints medians and the
ratio to the 0.2 s target. Usage: ``python benchmarks/bench_app.py [--model hrsegnet_b48] [--repeats 10]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["seg_head", "seg3", "seg2", "seg1", "stage2"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hrsegnet_b48")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)

    from segcam.app import core as app_core
    from segcam.cam.targets import PredictedTarget
    from segcam.data.images import read_image

    am = app_core.load_model(args.model, "random")
    rgb = read_image(ROOT / "examples" / "images" / "deepcrack_11215-9.jpg")
    t0 = time.perf_counter()
    res = app_core.compute(am, rgb, LAYERS, PredictedTarget(), "seg_grad_cam")
    first = time.perf_counter() - t0
    renders = []
    for i in range(args.repeats):
        layer = LAYERS[i % len(LAYERS)]
        t0 = time.perf_counter()
        app_core.render(res, layer, "inferno", 0.5, "per_map")
        renders.append(time.perf_counter() - t0)

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "apps" / "segcam_app.py"), default_timeout=300)
    at.session_state["m1_name"] = args.model
    at.session_state["m1_weights"] = "random"
    at.session_state["layers"] = LAYERS
    at.session_state["example"] = "deepcrack_11215-9.jpg"
    at.run()
    reruns = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        at.radio(key="shown").set_value(LAYERS[(i + 1) % len(LAYERS)]).run()
        reruns.append(time.perf_counter() - t0)
    if at.exception:
        print(at.exception, file=sys.stderr)
        return 1
    r, s = statistics.median(renders), statistics.median(reruns)
    print(f"model {args.model}, image 544x384, {len(LAYERS)} layers")
    print(f"first computation (all layers, one pass): {first:.3f} s")
    print(f"switch layer, render from cache:           {r * 1000:.1f} ms  ({r / 0.2:.2f} of the 0.2 s target)")
    print(f"switch layer, full Streamlit rerun:        {s * 1000:.1f} ms  ({s / 0.2:.2f} of the 0.2 s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
