#!/usr/bin/env python3
"""Checks that every README renders on its own (GitHub, crates.io) and not only as rustdoc.

A crate's README is its crate documentation (`#![doc = include_str!("../README.md")]`), so
rustdoc would accept what GitHub and crates.io show as broken text. This script refuses:

* rustdoc-hidden lines (`# fn main() {`, `# Ok(()) }`) in Rust code blocks: GitHub shows
  them verbatim. Write complete examples instead (a visible `Ok::<(), E>(())` last line
  lets rustdoc run `?` without a hidden `fn main`).
* intra-doc links (`[`Emks`]` with no definition, `[x](e2m_msg::Problem)`): GitHub shows
  the bare brackets. Every link needs a URL (reference-style definitions at the end).
* relative file links in crate READMEs: they break on docs.rs and crates.io (no repository
  URL to resolve them against); the root README may link files that exist.
* docs.rs links to our own crates that do not resolve: with DOC_DIR (rustdoc's output,
  e.g. $CARGO_TARGET_DIR/doc) each `https://docs.rs/<crate>/latest/<path>#<anchor>` must
  name an existing page and anchor there; crates.io links must name a workspace crate.

Usage: python3 .ci/check-readmes.py [DOC_DIR]     (exit 1 on any finding)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = sorted(p.parent.name for p in (ROOT / "crates").glob("*/Cargo.toml"))
# Fence info strings rustdoc compiles as Rust (an empty one included).
NOT_RUST = {"text", "sh", "bash", "console", "xml", "toml", "json", "python", "c", "ignore-md"}

LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])+)\](\(([^)\s]*)[^)]*\)|\[([^\]]*)\])?")
DEFINITION = re.compile(r"^\s{0,3}\[([^\]]+)\]:\s*(\S+)")


def code_blocks_stripped(text):
    """Yields (line number, line, in_rust_block, in_any_block)."""
    fence, rust = None, False
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = "```"
            info = stripped[3:].strip().split(",")[0].strip()
            rust = info == "" or info.startswith("rust") or info in {"no_run", "should_panic", "compile_fail", "ignore"}
            rust = rust and info not in NOT_RUST
            yield n, line, False, True
            continue
        if fence is not None and stripped.startswith(fence):
            fence = None
            yield n, line, False, True
            continue
        yield n, line, rust if fence else False, fence is not None


def check_target(readme, target, doc_dir, problems, where):
    if target.startswith("#"):
        return
    if "://" not in target:
        if readme.parent != ROOT:
            problems.append(f"{where}: relative link {target!r} breaks on docs.rs/crates.io; use a URL")
        elif not (readme.parent / target.split("#")[0]).exists():
            problems.append(f"{where}: link to missing file {target!r}")
        return
    m = re.match(r"https://docs\.rs/([A-Za-z0-9_-]+)/latest/([A-Za-z0-9_]+)/([^#]*)(?:#(.*))?$", target)
    if m and m.group(1) in CRATES:
        crate, ident, path, anchor = m.groups()
        if ident != crate.replace("-", "_"):
            problems.append(f"{where}: {target}: crate path {ident} does not match {crate}")
        elif doc_dir is not None:
            page = doc_dir / ident / (path or "index.html")
            if not page.is_file():
                problems.append(f"{where}: {target}: no such page in the built docs ({page})")
            elif anchor and f'id="{anchor}"' not in page.read_text(errors="replace"):
                problems.append(f"{where}: {target}: no anchor #{anchor} on that page")
        return
    m = re.match(r"https://(?:docs\.rs|crates\.io/crates)/([A-Za-z0-9_-]+)/?", target)
    if m and m.group(1).startswith("e2m") and m.group(1) not in CRATES:
        problems.append(f"{where}: {target}: not a crate of this workspace")


def is_link_text(line, span):
    """Whether a code span is the whole text of a link: [`X`]."""
    return line[span.start() - 1 : span.start()] == "[" and line[span.end() : span.end() + 1] == "]"


def check(readme, doc_dir):
    problems = []
    text = readme.read_text()
    rel = readme.relative_to(ROOT)
    definitions = {}
    for n, line, _, in_block in code_blocks_stripped(text):
        m = DEFINITION.match(line)
        if m and not in_block:
            definitions[m.group(1).lower()] = (n, m.group(2))
    for n, line, in_rust, in_block in code_blocks_stripped(text):
        where = f"{rel}:{n}"
        if in_rust:
            s = line.strip()
            if s == "#" or s.startswith("# "):
                problems.append(f"{where}: rustdoc-hidden line shown as text on GitHub: {s!r}")
            continue
        if in_block or DEFINITION.match(line):
            continue
        # Code spans not used as link text cannot hold links.
        plain = re.sub(r"`[^`]*`", lambda c: c.group(0) if is_link_text(line, c) else "``", line)
        for m in LINK.finditer(plain):
            label, inline, ref = m.group(1), m.group(3), m.group(4)
            if inline is not None:
                check_target(readme, inline, doc_dir, problems, where)
            else:
                key = (ref or label).lower()
                if key not in definitions:
                    problems.append(f"{where}: [{label}] has no link definition (an intra-doc link?)")
    for label, (n, target) in definitions.items():
        check_target(readme, target, doc_dir, problems, f"{rel}:{n}")
    return problems


def main():
    doc_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if doc_dir is not None and not doc_dir.is_dir():
        print(f"no rustdoc output at {doc_dir}")
        return 1
    readmes = [ROOT / "README.md"] + [ROOT / "crates" / c / "README.md" for c in CRATES]
    problems = []
    for readme in readmes:
        if not readme.exists():
            problems.append(f"{readme.relative_to(ROOT)}: missing")
            continue
        problems += check(readme, doc_dir)
    for p in problems:
        print(p)
    print(f"{len(readmes)} READMEs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
