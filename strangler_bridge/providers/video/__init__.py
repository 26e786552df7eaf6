"""The video (render) service: the client of its contract."""
