"""How much a connection has written that its client has not received yet, and whether a
closed connection's client is still reading its way to the end."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys

if sys.platform == "linux":
    import fcntl
    import termios

    def _kernel_queue(fd: int) -> int:
        """Bytes in the socket's send queue not yet acknowledged by the peer (SIOCOUTQ)."""
        raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

else:

    def _kernel_queue(fd: int) -> int:
        return 0  # elsewhere only the transport's buffer shows progress


def unsent(transport: asyncio.Transport) -> int:
    """The transport's write buffer plus the kernel's send queue (megabytes, when a client
    stops reading: the kernel grows its buffer before the transport's starts to fill)."""
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            size += _kernel_queue(sock.fileno())
    return size


# After the server's last frame (the close frame, or a stream's last chunk), how long the
# client may read nothing: one that reads nothing for this long (a slow one, typically) is cut
# off, so its buffers and per-IP slot are released; one that reads gets to the end, however
# much was ahead of it.
CLOSE_GRACE_S = 3.0


class CloseDrain:
    """After a close: what the client still had to read, and when it last read some of it."""

    __slots__ = ("left", "since")

    def __init__(self) -> None:
        self.left = 0
        self.since = 0.0  # 0.0 until the close

    def start(self, left: int, now: float) -> None:
        self.left, self.since = left, now

    def stalled(self, left: int, now: float) -> bool:
        """True once the client has read nothing of what is left for CLOSE_GRACE_S."""
        if left < self.left:
            self.left, self.since = left, now  # reading its way to the end: more time
            return False
        return now - self.since > CLOSE_GRACE_S
