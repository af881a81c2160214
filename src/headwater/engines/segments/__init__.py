"""Segmentation: PQL parsed to a typed AST (pql.py), compiled to one vectorized DuckDB query over a
profile's fragments and events (compile.py), and evaluated by hand for tests (brute.py). Pure: the caller
hands in the DuckDB connection with its relations registered."""
