"""``segcam app``: the Streamlit page on 127.0.0.1, with its path roots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError


def cmd_app(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess

    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise UsageError("the app needs Streamlit: pip install 'segcam[app]'") from None
    from segcam.app.core import ENV_ALLOW_REMOTE, ENV_RUNS_ROOT, ENV_WEIGHTS_ROOTS, LOOPBACK, MAX_UPLOAD_MB
    from segcam.app.review_view import ENV_PHOTOS_ROOTS
    from segcam.models.zoo import PRETRAINED_DIR

    runs_root = Path(args.runs_root).resolve()
    if not runs_root.is_dir():
        raise UsageError(f"--runs-root {args.runs_root} is not a folder")
    env = dict(os.environ, **{ENV_RUNS_ROOT: str(runs_root)})
    env.pop(ENV_ALLOW_REMOTE, None)
    roots = [Path(r).resolve() for r in args.weights_root] if args.weights_root else [Path.cwd(), PRETRAINED_DIR]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise UsageError(f"--weights-root {', '.join(missing)} is not a folder")
    env[ENV_WEIGHTS_ROOTS] = os.pathsep.join(map(str, roots))
    photos = [Path(r).resolve() for r in args.photos_root] if args.photos_root else [runs_root]
    missing = [str(r) for r in photos if not r.is_dir()]
    if missing:
        raise UsageError(f"--photos-root {', '.join(missing)} is not a folder")
    env[ENV_PHOTOS_ROOTS] = os.pathsep.join(map(str, photos))
    if args.host not in LOOPBACK:
        env[ENV_ALLOW_REMOTE] = "1"  # --host ADDRESS: the explicit choice to serve other machines
    script = Path(__file__).resolve().parents[1] / "app" / "ui.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.address", args.host, "--server.port", str(args.port), "--server.maxUploadSize",
           str(MAX_UPLOAD_MB), "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           *args.streamlit_args]
    shown = "localhost" if args.host in LOOPBACK else args.host
    print(f"segcam: serving the app on http://{shown}:{args.port} (runs under {runs_root})", file=sys.stderr)
    child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def stop(signum: int, frame: Any) -> None:  # SIGTERM/SIGHUP to segcam app stop its server too
        child.terminate()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=10)
        return 130
    finally:
        if child.poll() is None:
            child.kill()


def _die_with_parent() -> None:
    """In the app's server process: the kernel sends it SIGTERM when ``segcam app`` dies, even by SIGKILL."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'app' command to the ``segcam`` parser."""
    p = sub.add_parser("app", help="start the Streamlit app (needs the [app] extra)", formatter_class=fmt)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 serves every network interface (anyone who reaches it can "
                        "run models on this machine)")
    p.add_argument("--runs-root", default=".", help="'Browse a run' only opens run folders under this folder")
    p.add_argument("--weights-root", action="append", default=None,
                   help="folder the page may load weights/YAML from (repeatable; default: the working directory "
                        "and the shipped weights)")
    p.add_argument("--photos-root", action="append", default=None,
                   help="folder whose surveyed photos 'Review a run' may show at full resolution (repeatable; default: "
                        "the runs root; elsewhere the run's thumbnails are shown)")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra arguments for streamlit run")
    p.set_defaults(func=cmd_app)
