"""Figures: the top-p sweep (the paper's Figure 5) and MESM's kept sites (Figures 3 and 4).

matplotlib is imported lazily, inside the plotting functions.
"""
