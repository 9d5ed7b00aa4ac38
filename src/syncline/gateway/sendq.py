"""How much a connection has written that its client has not received yet."""

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
