"""Runware's HTTP API: the client and its wire models."""
