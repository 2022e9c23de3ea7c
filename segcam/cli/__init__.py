"""The ``segcam`` command line: parsing and display only; every command calls the library.

One module per command or command group (:mod:`segcam.cli.explain`, :mod:`segcam.cli.models`,
:mod:`segcam.cli.training`, :mod:`segcam.cli.figure`, :mod:`segcam.cli.app`, :mod:`segcam.cli.export`,
:mod:`segcam.cli.evaluation`, :mod:`segcam.cli.review`), each with a ``register(sub, fmt)`` that adds its options
(:mod:`segcam.cli.parser`) and ``cmd_*`` functions; shared options in :mod:`segcam.cli.common`.

Exit codes: 0 every image done, 1 some image failed (the others are still
written), 2 usage error (unknown model, layer, method, colormap, bad target...), 3 the output could not
be written, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Progress goes to stderr; stdout carries only tables and results.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from segcam.cli.common import UsageError, collect_images, set_device
from segcam.cli.parser import build_parser

__all__ = ["UsageError", "build_parser", "collect_images", "main"]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    0 ok, 1 some images failed, 2 usage error, 3 the output could not be written (file-system error),
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted batch records what finished and the
    same command resumes it.
    """
    import signal

    from segcam.utils.memory import keep_freed_memory, no_huge_pages

    no_huge_pages()
    keep_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading_main():
        signal.signal(signal.SIGTERM, _on_sigterm)
    from segcam.cam.engine import LayerGradientError
    from segcam.cam.hooks import LayerOutputError
    from segcam.cam.layers import LayerNotFoundError
    from segcam.cam.targets import TargetError
    from segcam.models.export import ExportError
    from segcam.models.weights import WeightsError
    from segcam.survey.atlas import AtlasError
    from segcam.survey.batch import RunFolderError
    from segcam.survey.ray_engine import RayUnavailableError
    from segcam.viz.figures import FigureError

    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads must be >= 1, got {threads}")
            import paddle

            paddle.base.core.set_num_threads(threads)
        set_device(getattr(args, "paddle_device", "auto"))
        return args.func(args)
    except BrokenPipeError:  # `segcam models | head`
        sys.stderr.close()
        return 0
    except (UsageError, LayerNotFoundError, TargetError, LayerGradientError, LayerOutputError, FigureError,
            ExportError, RayUnavailableError, AtlasError) as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # unknown model / method names
        print(f"segcam: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except RunFolderError as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        kept = {"explain": "finished images are recorded", "train": "the last checkpoint is kept"}.get(args.command)
        resume = f"{kept}; run the same command again to resume" if kept else "nothing was left half-written"
        print(f"segcam: {what}; {resume}", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    except OSError as exc:
        print(f"segcam: error: cannot write the output ({exc}); free space or choose another --out", file=sys.stderr)
        return 3


def threading_main() -> bool:
    """True in the main thread (only there can a signal handler be installed)."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
