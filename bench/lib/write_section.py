#!/usr/bin/env python3
"""Puts a Markdown section into a document, replacing that section if present.

    write_section.py DOC "## heading" SECTION_FILE [--top]

The section runs from its heading line to the next heading of level 1 or 2 (or the end); every
other section is left as it is. SECTION_FILE must start with the heading line. A section not yet
in DOC is appended, or with --top put before the first "## " section.
"""
import os
import sys


def main() -> None:
    doc, heading, section_file = sys.argv[1:4]
    top = "--top" in sys.argv[4:]
    with open(section_file, encoding="utf-8") as f:
        section = f.read().rstrip() + "\n"
    if not section.startswith(heading + "\n"):
        sys.exit(f"write_section.py: {section_file} does not start with {heading!r}")
    text = "# Lanyard benchmarks\n"
    if os.path.exists(doc):
        with open(doc, encoding="utf-8") as f:
            text = f.read()
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.rstrip() == heading), None)
    first = next((i for i, l in enumerate(lines) if l.startswith("## ")), None)
    if start is None and top and first is not None:
        before = "\n".join(lines[:first]).rstrip()
        after = "\n".join(lines[first:]).strip()
        text = before + "\n\n" + section + "\n" + after + "\n"
    elif start is None:
        text = text.rstrip() + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith(("# ", "## "))),
            len(lines),
        )
        before = "\n".join(lines[:start]).rstrip()
        after = "\n".join(lines[end:]).strip()
        text = before + "\n\n" + section + ("\n" + after + "\n" if after else "")
    os.makedirs(os.path.dirname(doc) or ".", exist_ok=True)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
