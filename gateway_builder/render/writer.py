"""The one way files get into a context: under its root, with normalized modes."""

from __future__ import annotations

from pathlib import Path

from gateway_builder.fetch.tree import copy_tree


class ContextWriter:
    """Writes files under a root with normalized modes; collects nothing else."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, rel: str, content: str, *, executable: bool = False) -> Path:
        """Write UTF-8 text at ``rel``."""
        return self.data(rel, content.encode("utf-8"), executable=executable)

    def data(self, rel: str, content: bytes, *, executable: bool = False) -> Path:
        """Write bytes at ``rel`` (parents created, mode 0644 or 0755)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o755 if executable else 0o644)
        return path

    def copy(self, src: Path, rel: str, *, executable: bool = False) -> Path:
        """Copy the content of ``src`` (not its mode or times) to ``rel``."""
        return self.data(rel, src.read_bytes(), executable=executable)

    def tree(self, src: Path, rel: str, what: str) -> None:
        """Copy a source tree to ``rel`` with the fetch stage's checks (``what`` names it)."""
        dest = self.root / rel
        dest.mkdir(parents=True, exist_ok=True)
        copy_tree(src, dest, what)
