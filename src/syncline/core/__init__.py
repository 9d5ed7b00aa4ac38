"""The sans-I/O core: plain data in, plain data out; no sockets, no asyncio, no database."""
