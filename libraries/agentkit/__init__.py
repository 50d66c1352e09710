"""Internals shared by the kit's keyword libraries (not a keyword library itself).

One event model, one dialect, one connection spec: every transport produces
:class:`Event`, every assertion consumes it.
"""
