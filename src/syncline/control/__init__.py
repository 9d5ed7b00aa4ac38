"""The control bus: commands every Syncline process carries out for its own connections."""

from syncline.control.base import ControlBus, ControlHandler
from syncline.control.memory import MemoryControlBus

__all__ = ["ControlBus", "ControlHandler", "MemoryControlBus"]
