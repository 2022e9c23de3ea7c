"""The ``segcam`` parser: one sub-command per module of :mod:`segcam.cli`, each adding its own options."""

from __future__ import annotations

import argparse

from segcam.cli import adapt, app, evaluation, explain, export, figure, models, review, survey, training
from segcam.cli.common import HelpFormatter

__all__ = ["COMMANDS", "build_parser"]

EPILOG = """examples:
  segcam explain --model hrsegnet_b48 --layer seg_head examples/images/deepcrack_IMG_6472-1.jpg
  segcam explain --model hrsegnet_b16 --layer seg_head --layer seg3 --target mask:masks/ --out runs/cam imgs/
  segcam layers --model hrsegnet_b48 --size 400 400
  segcam models b48                    (a substring or a shell wildcard such as 'hrsegnet_*')
  segcam atlas segcam_out --masks examples/masks && segcam report segcam_out
  segcam review segcam_out --import verdicts.csv   (columns name,crack,verdict)

exit codes:
  0 every image done, 1 some images failed (the others are written), 2 usage error, 3 the output could not
  be written (disk full, permissions), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted
  explain records what finished and the same command resumes it
"""

#: The command modules, in the order ``segcam --help`` lists them.
COMMANDS = (explain, survey, review, adapt, models, training, figure, app, export, evaluation)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``segcam`` command."""
    from segcam.version import __version__

    parser = argparse.ArgumentParser(prog="segcam", description="Seg-Grad-CAM explanations for crack segmentation.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"segcam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub, HelpFormatter)
    return parser
