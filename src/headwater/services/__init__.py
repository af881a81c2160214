"""The domain: plain Python rules over the stores. No HTTP here."""
