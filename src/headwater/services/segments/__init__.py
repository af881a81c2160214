"""Audiences: segment definitions (definitions.py), their evaluation over the profile store in DuckDB
(evaluation.py: batch jobs over a whole sandbox, streaming re-evaluation of the profiles that changed),
segment jobs (jobs.py) and previews/estimates (previews.py), in AEP's Segmentation Service shapes."""
