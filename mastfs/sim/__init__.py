"""A MAST-compatible archive simulator: a deterministic catalog, generated file bytes, HTTP server.

It shares no code with the rest of mastfs; the two sides meet only over HTTP.
"""
