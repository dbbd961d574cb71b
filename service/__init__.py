"""Weft: an MCP server for shopping in chat, one cart per conversation."""

__version__ = "0.1.0"
