"""The catalog Headwater ships: connection specs, flow specs and XDM classes and field groups as JSON
files, and :mod:`headwater.catalog.ids`, the one place their ids are named in code."""
