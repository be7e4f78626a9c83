"""Measuring a model on the shapes domain: prompt adherence (ShapesEval) and FD."""
