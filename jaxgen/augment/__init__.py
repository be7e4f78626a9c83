"""`jaxgen augment`: a labelled dataset and a recipe in, an augmented labelled dataset out.

The recipe becomes a plan of ordinary generation requests (plan.py), run by the same Beam
pipeline as `jaxgen generate`; a filter on the worker drops images that fail a check and
records why (filters.py).
"""

from jaxgen.augment.inputs import LabelledImage, read_labelled
from jaxgen.augment.recipe import Recipe, load_recipe

__all__ = ["LabelledImage", "Recipe", "load_recipe", "read_labelled"]
