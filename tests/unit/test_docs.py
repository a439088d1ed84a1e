"""The documentation says what the code does: the option reference is what scripts/docs-options
writes from the option declarations, every `--flag` the README and docs/ name is a flag of the
command (or of the other tool its paragraph names), and every flag of the command is in the
reference. The README stays the short manual: set-up, tour, options, links."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SCRIPT = ROOT / "scripts" / "docs-options"

# Flags of other tools the docs show, with a word their paragraph must also hold: a flag of ours
# that is misspelled or gone does not pass as one of theirs.
FOREIGN = {
    "--cacert": "curl", "--compressed": "curl", "--http1.1": "curl",
    "--mode": "mitmdump", "--options": "mitmdump",
    "--compare": "bench", "--only": "bench", "--quick": "bench", "--runs": "bench",
    "--seconds": "bench",
    "--strict": "mkdocs",
    "--system": "useradd", "--home-dir": "useradd", "--shell": "useradd",
    "--now": "systemctl",
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9.-]*[a-z0-9]")
# Words that look like cache options but name something else (a JSON field of the access log,
# the policy module of that name).
NOT_OPTIONS = {"cache_status"}


def docs_options() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("docs_options", str(SCRIPT))
    spec = importlib.util.spec_from_loader("docs_options", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def paragraphs(text: str) -> list[str]:
    return re.split(r"\n\s*\n", text)


def cli_flags() -> set[str]:
    parser = docs_options().cli.build_parser()
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def test_option_reference_is_what_the_script_writes() -> None:
    script = docs_options()
    committed = script.PAGE.read_text(encoding="utf-8")
    assert committed == script.render(), (
        "docs/configuration/options.md is out of date: run .venv/bin/python scripts/docs-options")


def test_every_flag_the_docs_name_exists() -> None:
    ours = cli_flags()
    wrong = []
    for page in pages():
        for paragraph in paragraphs(page.read_text(encoding="utf-8")):
            for flag in FLAG.findall(paragraph):
                if flag in ours:
                    continue
                tool = FOREIGN.get(flag)
                if tool is None or tool not in paragraph:
                    wrong.append(f"{page.relative_to(ROOT)}: {flag}")
    assert not wrong, "flags that caching-proxy does not have:\n" + "\n".join(sorted(set(wrong)))


def test_every_cache_option_the_docs_name_exists() -> None:
    options = {o.name for o in docs_options().opts.CACHE_OPTIONS}
    wrong = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages()
        for name in re.findall(r"\bcache_[a-z_]+", page.read_text(encoding="utf-8"))
        if name not in options and name not in NOT_OPTIONS and not name.startswith("cache_proxy")
    }
    assert not wrong, "cache options that do not exist:\n" + "\n".join(sorted(wrong))


def reference_rows(heading: str) -> list[str]:
    """The first cells of the table under `heading` in the option reference."""
    text = (DOCS / "configuration" / "options.md").read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    rows = []
    for line in text[start:].splitlines():
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append(line.split(" | ")[0])
    return rows[1:]  # the header row left out


def test_every_cli_flag_is_in_the_reference() -> None:
    documented: list[str] = []
    for cell in reference_rows("## Options"):
        documented += FLAG.findall(cell)
    assert len(documented) == len(set(documented)), "a flag is listed twice"
    assert set(documented) == cli_flags()


def test_every_cache_option_is_in_the_reference() -> None:
    documented = [name for cell in reference_rows("## Cache options")
                  for name in re.findall(r"\bcache_[a-z_]+", cell)]
    assert sorted(documented) == sorted(o.name for o in docs_options().opts.CACHE_OPTIONS)


def test_readme_is_the_short_manual() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    # CI (.ci/run) runs this command; a newcomer is told the same.
    assert "./scripts/test" in text
    assert "./scripts/caching-proxy --port 3000 --origin http://dummyjson.com" in text
    for page in ("docs/security.md", "docs/configuration/options.md"):
        assert f"]({page}" in text, page


def test_every_page_is_in_the_site_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        assert f" {page.relative_to(DOCS).as_posix()}\n" in config, page


def test_links_between_the_readme_and_docs_resolve() -> None:
    """The README's links into docs/ name files that exist (mkdocs checks the links inside
    docs/ itself)."""
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).exists(), target
