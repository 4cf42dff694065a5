"""The ``anthropic`` provider kind of rakka-runtime: the Messages API as a sans-IO codec."""
