"""The mapping engine: Data Prep mapping sets applied to Arrow batches with vectorized kernels.

    compile_mapping(mapping_set_doc, resolved_schema) -> CompiledMapping     engine.py
    identity_compile(resolved_schema) -> CompiledMapping                     engine.py
    CompiledMapping.apply(batch, now=...) -> MappingResult                   engine.py

How a batch goes through (each step one module):

    paths.py        read ATTRIBUTE sources (a.b.c, [n], [*], a\\.b, names with spaces)
    expressions.py  the EXPRESSION language: reference, tokenizer, parser (no Python eval)
    evaluate.py     check and evaluate expression trees over whole arrays
    functions.py    the language's functions        datetimes.py  dates, times, Java-style patterns
    coerce.py       conversion to each destination field's type
    assemble.py     nested target columns (structs, arrays of objects, maps) from the mapped values
    validate.py     required fields, lengths, enums, patterns, formats, bounds
    results.py      RowError, MappingResult, and how failures are collected

A row that fails any step is left out of ``MappingResult.output`` and reported in ``errors`` with a
stable code (MAPPER-3700-400, INGEST-1555-400, INGEST-1401-400); the other rows go on.
"""

from headwater.engines.mapping.engine import CompiledMapping, Identity, compile_mapping, identity_compile
from headwater.engines.mapping.expressions import ExpressionError
from headwater.engines.mapping.results import (
    INVALID_VALUE,
    MAPPING_FAILED,
    REQUIRED_MISSING,
    MappingResult,
    RowError,
)

__all__ = [
    "INVALID_VALUE",
    "MAPPING_FAILED",
    "REQUIRED_MISSING",
    "CompiledMapping",
    "ExpressionError",
    "Identity",
    "MappingResult",
    "RowError",
    "compile_mapping",
    "identity_compile",
]
