"""docs/benchmarks.md: each benchmark owns a generated section between markers; the text
around the sections is written by hand and kept."""

from pathlib import Path


def replace_section(path: Path, name: str, lines: list[str]) -> None:
    """Put `lines` between `<!-- name:begin -->` and `<!-- name:end -->`, appending the
    section at the end of the file the first time."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin not in text:
        text = f"{text.rstrip()}\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n" + "\n".join(lines) + f"\n{end}{tail}")
