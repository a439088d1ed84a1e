"""One table of options: the reference's tables (docs/configuration/options.md), `--help`,
mitmproxy's options and the config file's keys all say what options.CACHE_OPTIONS says."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from mitmproxy import optmanager
from mitmproxy.test import taddons

from caching_proxy.cli import main as cli
from caching_proxy.cli import options as opts

# The option reference (scripts/docs-options writes it from the same declarations).
README = Path(__file__).resolve().parents[2] / "docs" / "configuration" / "options.md"


def markdown_table_after(text: str, marker: str) -> list[list[str]]:
    """The rows (cells, header and separator left out) of the first table after `marker`."""
    start = text.index(marker)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        # A cell may hold an escaped \| (e.g. `text\|json`).
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([c.strip() for c in cells])
    return rows


def readme_rows(marker: str, name: str) -> dict[str, list[str]]:
    """README's table after `marker`: each name matching `name` in a row's first cell -> row."""
    found: dict[str, list[str]] = {}
    for row in markdown_table_after(README.read_text(encoding="utf-8"), marker):
        for token in re.findall(name, row[0]):
            assert token not in found, f"README lists {token} twice"
            found[token] = row
    return found


def flag_rows() -> dict[str, list[str]]:
    return readme_rows("## Options", r"--[a-z][\w-]*")


def cache_option_rows() -> dict[str, list[str]]:
    return readme_rows("Cache options (also settable", r"\bcache_[a-z_]+")


def help_flags() -> set[str]:
    """The long options `--help` shows, read from its text."""
    text = cli.build_parser().format_help()
    # A short spelling first: `-s FILE, --script FILE`.
    return set(re.findall(r"^  (?:-\w(?: \S+)?, )?(--[a-z][\w-]*)", text, flags=re.MULTILINE))


def differences(what: str, documented: set[str], actual: set[str]) -> str:
    return (f"{what}: missing from README: {sorted(actual - documented)}; in README but not "
            f"real: {sorted(documented - actual)}")


def test_readme_options_table_lists_exactly_the_help_flags() -> None:
    documented, actual = set(flag_rows()), help_flags()
    assert documented == actual, differences("flags", documented, actual)


def test_readme_cache_options_table_lists_exactly_the_table() -> None:
    documented = set(cache_option_rows())
    actual = {o.name for o in opts.CACHE_OPTIONS}
    assert documented == actual, differences("cache options", documented, actual)


def shown_defaults(row: list[str], names: list[str]) -> dict[str, str]:
    """Each option of a README row -> its default cell (a row of several splits it on commas)."""
    cell = row[1].replace("`", "")
    if len(names) == 1:
        return {names[0]: cell}
    parts = [p.strip() for p in cell.split(",")]
    assert len(parts) == len(names), f"README row {row[0]}: one default per option"
    return dict(zip(names, parts, strict=True))


def shows(cell: str, default: object) -> bool:
    text = str(default).lower() if isinstance(default, bool) else str(default)
    return re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", cell) is not None


def test_readme_defaults_are_the_tables() -> None:
    rows = cache_option_rows()
    wrong = []
    for row in {id(r): r for r in rows.values()}.values():
        names = re.findall(r"\bcache_[a-z_]+", row[0])
        for name, cell in shown_defaults(row, names).items():
            # cache_dir's default depends on $XDG_CACHE_HOME; an empty default reads "(empty)".
            default = opts.DEFAULTS[name]
            if name != "cache_dir" and default not in ("", None) and not shows(cell, default):
                wrong.append(f"{name}: README says {cell!r}, the default is {default!r}")
    flags = flag_rows()
    for option in opts.CACHE_OPTIONS:
        for flag in option.flags:
            if option.default and not flag.switch and option.name != "cache_dir" and not shows(
                    flags[flag.name][1].replace("`", ""), option.default):
                wrong.append(f"{flag.name}: README says {flags[flag.name][1]!r}, "
                             f"the default is {option.default!r}")
    assert not wrong, "\n".join(wrong)


def test_help_shows_each_flags_default_and_option() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    for option in opts.CACHE_OPTIONS:
        for flag in option.flags:
            assert flag.help.strip() and "{default}" not in opts.flag_help(option, flag)
            assert f"[{option.name}]" in text, option.name
            if "{default}" in flag.help:
                assert f"(default: {option.default}" in text, flag.name


def test_every_cache_option_is_declared_once_by_the_addons() -> None:
    from caching_proxy.bundle import addons

    # What mitmweb's option editor and `mitmdump --options` show.
    with taddons.context(*addons()) as tctx:
        shown = {name: o for name, o in optmanager.dump_dicts(tctx.options).items()
                 if name.startswith("cache_")}
    assert set(shown) == {o.name for o in opts.CACHE_OPTIONS}
    for option in opts.CACHE_OPTIONS:
        mitm = shown[option.name]
        assert (mitm["type"], mitm["default"], mitm["help"]) == (
            option.type.__name__, option.default, option.help), option.name


def parse(*argv: str) -> dict[str, object]:
    return opts.options_given(cli.build_parser().parse_args(list(argv)))


def test_flags_set_their_options_and_only_those_given() -> None:
    assert parse() == {}
    assert parse("--default-ttl", "60", "--store", "redis://127.0.0.1:6379/0",
                 "--metrics-port", "9100", "--max-object-size", "2m") == {
        "cache_default_ttl": 60, "cache_store": "redis://127.0.0.1:6379/0",
        "cache_metrics_port": 9100, "cache_max_object_size": "2m"}
    assert parse("--log-format", "json") == {"cache_access_log": "json"}
    # --quiet wins over --log-format, in either order (as before the table).
    assert parse("--log-format", "json", "--quiet") == {"cache_access_log": "off"}
    assert parse("--quiet", "--log-format", "json") == {"cache_access_log": "off"}
    assert parse("--log-format", "combined", "--access-log", "/var/log/p.log") == {
        "cache_access_log": "combined", "cache_access_log_file": "/var/log/p.log"}
    assert parse("--log-format", "%h %{X-Cache}o") == {"cache_access_log": "%h %{X-Cache}o"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--default-ttl", "-1"], "argument --default-ttl: invalid seconds -1: must not be negative"),
    (["--metrics-port", "0"], "argument --metrics-port: invalid port 0: must be 1-65535"),
    (["--max-object-size", "big"], "argument --max-object-size: invalid size 'big'"),
    (["--use-stale", "sometimes"], "argument --use-stale:"),
    (["--store", "http://x"], "argument --store: invalid store 'http://x'"),
    (["--log-format", "xml"], "argument --log-format: invalid log format 'xml'"),
    (["--log-format", "%h %y"], "argument --log-format: invalid log format '%h %y': unknown "
     "directive '%y'"),
    (["--warm-concurrency", "0"], "argument --warm-concurrency: invalid concurrency 0"),
])
def test_flag_values_are_checked_by_the_tables_validators(argv: list[str], message: str) -> None:
    parser = cli.build_parser()
    parser.raise_errors = True
    with pytest.raises(ValueError, match=re.escape(message)):
        parser.parse_args(argv)


def test_config_keys_are_the_long_flags() -> None:
    keys = {flag.key for _, flag in cli.all_flags() if flag.in_config}
    assert {"origin", "port", "default_ttl", "quiet", "log_format", "set", "web"} <= keys
    assert not keys & {"config", "clear_cache", "purge", "list", "stats", "json", "help"}
    dests = [flag.attribute for _, flag in cli.all_flags()]
    assert len(dests) == len(set(dests)), "two flags share an argparse attribute"
    assert isinstance(cli.build_parser().parse_args([]), argparse.Namespace)
