"""What every part that verifies Syncline's JWTs agrees on: the algorithm and a size bound."""

from __future__ import annotations

ALGORITHMS = ["HS256"]
# Tokens are short (a few hundred bytes); a megabyte "token" is an attack, not a credential.
MAX_TOKEN_LENGTH = 8192
