"""privmed: release medical images under a differential-privacy guarantee you can defend.

The package reads as the pipeline: ``data`` -> ``privacy`` -> ``models`` -> ``methods`` ->
``evaluate`` -> ``report``; ``cli`` is a thin layer over the API.
"""

__version__ = "0.1.0"
