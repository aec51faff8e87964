"""Figures: pure `plot_*(data, ax=None)` functions, graphviz drawings, widget panels, `save_figure`."""
