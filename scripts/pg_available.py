"""Exit 0 when the PostgreSQL server named by the URL in argv[1] answers, 1 otherwise."""

from __future__ import annotations

import sys


def main() -> int:
    url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://")
    try:
        import psycopg
    except ImportError:
        return 1
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
