"""Regenerate src/syncline/core/proto/client_pb2.py and .pyi from client.proto.

Run from the repository root: ``.venv/bin/python scripts/gen_proto.py`` after
``.venv/bin/pip install -e ".[proto]"`` (grpcio-tools, which bundles protoc, pinned so the
output is reproducible). The generated modules are checked in: installing Syncline needs no
protoc, only the protobuf runtime.

One change is made to protoc's output: the messages are registered in a private descriptor
pool instead of protobuf's default one. centrifuge-python (the test suite's client) registers
an older copy of the same client.proto, package ``centrifugal.centrifuge.protocol``, in the
default pool, and protobuf refuses two different definitions of one symbol in a pool. The wire
format does not involve the pool, so both copies read each other's bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PROTO = "syncline/core/proto/client.proto"
OUT = SRC / "syncline/core/proto/client_pb2.py"

DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = (
    "# Syncline: a private pool, so that another copy of client.proto (centrifuge-python's)\n"
    "# can be loaded in the same process (scripts/gen_proto.py).\n"
    "_POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = _POOL.AddSerializedFile("
)


def main() -> int:
    args = ["protoc", f"-I{SRC}", f"--python_out={SRC}", f"--pyi_out={SRC}", str(SRC / PROTO)]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    code = OUT.read_text()
    if code.count(DEFAULT_POOL) != 1:
        print(f"{OUT}: protoc's output changed shape; update this script", file=sys.stderr)
        return 1
    OUT.write_text(code.replace(DEFAULT_POOL, PRIVATE_POOL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
