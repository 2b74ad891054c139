"""Draw records as printed 12-lead ECGs: grid paper (paper.py), the 3x4 + rhythm layout
(layout.py), the page content (page.py, predictions.py) and the drawing itself (render.py)."""
