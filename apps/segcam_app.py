"""Streamlit entry point for a source checkout: ``streamlit run apps/segcam_app.py``.

The page itself lives in the package (``segcam/app_ui.py``) so that ``segcam app`` also works
from an installed wheel.
"""

from segcam.app.ui import main

main()
