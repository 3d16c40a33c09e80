#!/usr/bin/env python3
"""Checks that every publishable crate of the workspace has what crates.io and docs.rs need
(run by .ci/package before packaging; the list a new crate must satisfy):

* description, license, documentation = https://docs.rs/<name>, readme = README.md;
* 1..5 keywords (crates.io's rules: ASCII, at most 20 characters, starting alphanumeric,
  only letters, digits, _ - +) and 1..5 categories from CATEGORIES below (crates.io slugs;
  add a slug here only after checking it on https://crates.io/category_slugs);
* [package.metadata.docs.rs] with all-features = true and rustdoc-args --cfg docsrs, and
  `#![cfg_attr(docsrs, feature(doc_cfg))]` in src/lib.rs when the crate has features;
* README.md (with a "## Features" section), CHANGELOG.md, LICENSE-MIT, LICENSE-APACHE;
* no placeholder text (example.invalid, TODO, FIXME, changeme) in any manifest field.

Usage: python3 .ci/check-metadata.py      (exit 1 on any finding)
"""
import json
import re
import subprocess
import sys
from pathlib import Path

# The crates.io category slugs this workspace uses (each checked against crates.io's list).
CATEGORIES = {
    "authentication",
    "cryptography",
    "data-structures",
    "database",
    "embedded",
    "encoding",
    "network-programming",
    "no-std",
    "no-std::no-alloc",
    "parser-implementations",
    "web-programming::http-client",
    "web-programming::http-server",
}
KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,19}$")
PLACEHOLDER = re.compile(r"example\.invalid|\bTODO\b|\bFIXME\b|changeme|your-name", re.I)


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    problems = []
    for p in metadata["packages"]:
        if p["publish"] == []:
            continue
        name, root = p["name"], Path(p["manifest_path"]).parent
        say = lambda msg: problems.append(f"{name}: {msg}")
        for field in ["description", "license"]:
            if not p.get(field):
                say(f"no {field}")
        if p.get("documentation") != f"https://docs.rs/{name}":
            say(f"documentation should be https://docs.rs/{name}")
        if not (p.get("readme") or "").endswith("README.md"):
            say("readme should be README.md")
        keywords, categories = p.get("keywords", []), p.get("categories", [])
        if not 1 <= len(keywords) <= 5:
            say(f"{len(keywords)} keywords (crates.io takes 1..5)")
        for k in keywords:
            if not KEYWORD.match(k):
                say(f"keyword {k!r} breaks crates.io's rules")
        if not 1 <= len(categories) <= 5:
            say(f"{len(categories)} categories (crates.io takes 1..5)")
        for c in categories:
            if c not in CATEGORIES:
                say(f"category {c!r} is not in the checked list (.ci/check-metadata.py)")
        docs_rs = (p.get("metadata") or {}).get("docs", {}).get("rs", {})
        if docs_rs.get("all-features") is not True:
            say("[package.metadata.docs.rs] all-features = true missing")
        if "--cfg" not in docs_rs.get("rustdoc-args", []) or "docsrs" not in docs_rs.get("rustdoc-args", []):
            say('[package.metadata.docs.rs] rustdoc-args = ["--cfg", "docsrs"] missing')
        lib = root / "src" / "lib.rs"
        if p.get("features") and lib.exists() and "#![cfg_attr(docsrs, feature(doc_cfg))]" not in lib.read_text():
            say("has features but src/lib.rs lacks #![cfg_attr(docsrs, feature(doc_cfg))]")
        for f in ["README.md", "CHANGELOG.md", "LICENSE-MIT", "LICENSE-APACHE"]:
            if not (root / f).is_file():
                say(f"{f} missing")
        readme = root / "README.md"
        if readme.is_file() and "\n## Features\n" not in readme.read_text():
            say("README.md has no '## Features' section")
        manifest_values = json.dumps({k: v for k, v in p.items() if k not in ("dependencies", "targets")})
        if PLACEHOLDER.search(manifest_values):
            say(f"placeholder text in the manifest: {PLACEHOLDER.search(manifest_values).group(0)!r}")
    for problem in problems:
        print(problem)
    print(f"crate metadata: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
