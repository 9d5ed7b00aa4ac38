"""Channel log engines: offsets, epochs, bounded history and fan-out (memory and Redis)."""

from syncline.engine.factory import open_engine

__all__ = ["open_engine"]
