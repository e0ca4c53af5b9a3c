"""The text of the documentation pages (docs/*.md) and of the README, where the commands the
tests run as written stand (each command the README shows is also on a page)."""

from pathlib import Path

ROOT = Path(__file__).parents[1]


def documented():
    """Every page of docs/, then the README, as one text (a heading's first occurrence is a page's)."""
    pages = sorted((ROOT / "docs").glob("*.md"))
    return "\n".join(page.read_text() for page in pages) + "\n" + (ROOT / "README.md").read_text()
