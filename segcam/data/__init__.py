"""Reading inputs: photos (local files and URIs, checked before decoding) and the crack data sets in ../shared/data."""
