"""--help without a type after flags: Typer shows `--json <bool>`, which reads as if the flag
took a value."""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type_rich = TyperOption.display_type_rich


def _type_unless_flag(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _display_type_rich(self, ctx)


def hide_flag_types() -> None:
    """Patch Typer's help panel once (a test reads --help, so an upgrade that breaks it shows)."""
    TyperOption.display_type_rich = _type_unless_flag  # type: ignore[method-assign]
