"""``python -m mailgate``: the same as the ``mailgate`` command."""

from __future__ import annotations

from mailgate.cli import main

main()
