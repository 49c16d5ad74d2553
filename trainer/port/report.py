"""What a port could not map (warnings, `--strict` errors) and what it mapped with a caveat (notes)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """One thing of the source config, by its key path (`model.backbone.frozen_stages`), and why."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass
class Report:
    """Collects unmapped items (each one warning line) and notes (header comments only)."""

    unmapped: list[Item] = field(default_factory=list)
    notes: list[Item] = field(default_factory=list)

    def skip(self, key: str, message: str) -> None:
        """`key` of the source does not map (or maps only approximately): a warning."""
        item = Item(key, message)
        if item not in self.unmapped:
            self.unmapped.append(item)

    def note(self, key: str, message: str) -> None:
        """`key` maps, with something the reader should know."""
        item = Item(key, message)
        if item not in self.notes:
            self.notes.append(item)
