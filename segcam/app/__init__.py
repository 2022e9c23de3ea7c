"""The Streamlit app.

:mod:`segcam.app.core` holds its logic (tested without a browser), :mod:`segcam.app.ui` draws the page.
"""
