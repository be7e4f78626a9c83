"""`jaxgen augment`: a labelled dataset and a recipe in, an augmented labelled dataset out.

The recipe becomes a plan of ordinary generation requests (plan.py), run by the same Beam
pipeline as `jaxgen generate`; a filter on the worker drops images that fail a check and
records why (filters.py).
"""

# Nothing is imported here: `jaxgen augment --help` must not import Beam (its import-time
# warnings would reach the console before jaxgen's filters are set).
