"""Rendering: image grids, CAM overlays, plots and the HTML report; each function writes one file
atomically and returns its path (matplotlib with the Agg backend, imported lazily)."""
