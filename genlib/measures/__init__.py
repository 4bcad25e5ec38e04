"""Measurements of trained networks: curvature, neural collapse, the NTK, circuits, example
scores, pruning masks, and closed-form regression. Built on :mod:`genlib.core`."""
