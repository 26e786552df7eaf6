"""The HTTP layer: routes shared by every phase, auth, errors, limits, and the dependencies they share."""
