"""Processes the tests and the bench start on loopback (redis-server, ``weft-mcp serve``), started and
stopped one way. Not part of the ``service`` wheel: it serves a checkout of this repository."""
