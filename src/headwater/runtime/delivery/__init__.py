"""Delivery to HTTP destinations: request templates, bindings, the delivery engine."""
