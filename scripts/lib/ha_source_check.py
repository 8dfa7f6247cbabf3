"""What a Home Assistant release says is about to break, for the calls this integration makes.

Part of scripts/check-ha-source (beside pyright's type check against the same release).
Home Assistant announces a break with `report_usage(..., breaks_in_ha_version="X")` inside
the function that will change. This reads the release's source as text (a 2026.3+ release
is Python 3.14, which the Python here cannot parse), finds every such call, the function it
sits in and the `if` tests on the way to it, and matches them with the integration's own
calls (read with `ast`): a call that passes none of the arguments a guarded branch needs
cannot reach it. A break due by the next release fails the check; later ones are listed.
It also checks that every selector the shipped blueprints use exists in the release.

    python scripts/lib/ha_source_check.py --ha SITE --integration DIR --release 2026.11.0 \
        --blueprints config/homeassistant/blueprints
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+(\w+)\s*\(")
VERSION = re.compile(r"breaks_in_ha_version\s*=\s*(?:\"([^\"]+)\"|'([^']+)'|(\w+))")
ALWAYS = ("config_entries.py", "data_entry_flow.py", "core.py")


UNKNOWN = object()  # an argument whose value is not a literal at the call site
UNDEFINED = object()  # Home Assistant's own "not given" sentinel


@dataclass(frozen=True)
class Call:
    """One call the integration makes: the name called and the arguments it passes (their
    values where they are literals)."""

    name: str
    where: str
    keywords: tuple[tuple[str, Any], ...]
    positional: tuple[Any, ...]

    def value(self, param: str, index: int, default: str | None) -> Any:
        """What `param` is in this call: a literal, UNKNOWN, or its literal default."""
        given = dict(self.keywords)
        if param in given:
            return given[param]
        if 0 <= index < len(self.positional):
            return self.positional[index]
        if default == "UNDEFINED":
            return UNDEFINED
        try:
            return ast.literal_eval(default) if default is not None else UNKNOWN
        except (ValueError, SyntaxError):
            return UNKNOWN


class _Scope(dict[str, Any]):
    """Names a test may read: the call's known values; anything else is not known."""

    def __missing__(self, key: str) -> Any:
        raise NameError(key)


@dataclass(frozen=True)
class Announced:
    """One announced break: in function `name` of `where`, under the `tests` on its way."""

    name: str
    where: str
    version: str
    params: tuple[tuple[str, str | None], ...]  # (name, default) in order
    tests: tuple[str, ...]
    text: str

    def reachable_by(self, call: Call) -> bool:
        """False only when a test on the way is false for this call's literal arguments
        (and the defaults it leaves); a test that reads anything unknown may be true."""
        names = [p for p, _ in self.params]
        offset = 1 if names and names[0] in ("self", "cls") else 0
        scope = _Scope(UNDEFINED=UNDEFINED)
        for i, (name, default) in enumerate(self.params):
            value = call.value(name, i - offset, default)
            if value is not UNKNOWN:
                scope[name] = value
        for test in self.tests:
            expr = re.sub(r"^(?:if|elif)\s+", "", test.strip()).rstrip(":")
            try:
                if not eval(compile(expr, "<test>", "eval"), {"__builtins__": {}}, scope):
                    return False
            except Exception:  # reads something not known here: it may be true
                continue
        return True


def integration_calls(folder: Path) -> tuple[list[Call], set[str]]:
    """Every call in the integration's modules, and the HA modules they import."""
    calls: list[Call] = []
    modules: set[str] = set()
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("homeassistant"):
                assert node.module is not None
                modules.add(node.module)
                modules.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                modules.update(a.name for a in node.names if a.name.startswith("homeassistant"))
            elif isinstance(node, ast.Call):
                func = node.func
                name = (
                    func.attr
                    if isinstance(func, ast.Attribute)
                    else func.id
                    if isinstance(func, ast.Name)
                    else None
                )
                if name:
                    calls.append(
                        Call(
                            name,
                            f"{path.name}:{node.lineno}",
                            tuple((k.arg, _literal(k.value)) for k in node.keywords if k.arg),
                            tuple(_literal(a) for a in node.args),
                        )
                    )
    return calls, modules


def _literal(node: ast.expr) -> Any:
    return node.value if isinstance(node, ast.Constant) else UNKNOWN


def files_of(ha: Path, modules: set[str]) -> list[Path]:
    """The release's source files behind the modules the integration imports."""
    out = {ha / "homeassistant" / f for f in ALWAYS}
    for module in modules:
        rel = Path(*module.split("."))
        if (ha / rel).is_dir():
            out.update((ha / rel).glob("*.py"))
        elif (ha / rel).with_suffix(".py").is_file():
            out.add((ha / rel).with_suffix(".py"))
    return sorted(p for p in out if p.is_file())


def _call_text(lines: list[str], row: int, col: int) -> str:
    """The text of a call from its opening parenthesis to the matching one."""
    depth, out = 0, []
    for text in lines[row:]:
        for ch in text[col:]:
            out.append(ch)
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return "".join(out)
        col = 0
        out.append("\n")
    return "".join(out)


def _params(lines: list[str], row: int) -> tuple[tuple[str, str | None], ...]:
    """A def's parameters and their defaults, from its signature's text."""
    sig = _call_text(lines, row, lines[row].index("("))[1:-1]
    depth, part, parts = 0, "", []
    for ch in sig:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    parts.append(part)
    out = []
    for p in parts:
        p = p.strip().lstrip("*")
        if not p or p == "/":
            continue
        name = re.match(r"\w+", p)
        if name is None:
            continue
        default = p.split("=", 1)[1].strip() if "=" in p else None
        out.append((name.group(0), default))
    return tuple(out)


def announced(path: Path, ha: Path) -> list[Announced]:
    lines = path.read_text(encoding="utf-8").splitlines()
    consts = dict(re.findall(r"^(\w+)\s*(?::\s*\w+)?\s*=\s*\"([^\"]+)\"", "\n".join(lines), re.M))
    found = []
    for row, line in enumerate(lines):
        col = line.find("report_usage(")
        if col < 0 or line.lstrip().startswith(("def ", "async def ", "#")):
            continue
        text = _call_text(lines, row, col + len("report_usage"))
        m = VERSION.search(text)
        if m is None:
            continue
        version = m.group(1) or m.group(2) or consts.get(m.group(3) or "")
        if version is None:
            continue
        indent = len(line) - len(line.lstrip())
        tests: list[str] = []
        for up in range(row - 1, -1, -1):
            above = lines[up]
            if not above.strip() or above.lstrip().startswith("#"):
                continue
            lead = len(above) - len(above.lstrip())
            head = above.strip()
            if lead >= indent or head.startswith(")"):  # a multi-line def's closing line
                continue
            indent = lead
            if (d := DEF.match(above)) is not None:
                found.append(
                    Announced(
                        d.group(2),
                        f"{path.relative_to(ha)}:{row + 1}",
                        version,
                        _params(lines, up),
                        tuple(tests),
                        " ".join(text.split())[:160],
                    )
                )
                break
            if head.startswith(("if ", "elif ")):
                opened = head.count("(") > head.count(")")
                tests.append(_call_text(lines, up, above.index("(")) if opened else head)
    return found


def _month(version: str) -> tuple[int, int]:
    year, month, *_ = (int(x) for x in re.findall(r"\d+", version)[:2])
    return year, month


def next_release(release: str) -> tuple[int, int]:
    year, month = _month(release)
    return (year + 1, 1) if month == 12 else (year, month + 1)


class _Loader(yaml.SafeLoader):
    """YAML with Home Assistant's tags (`!input`, `!secret`) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def blueprint_selectors(folder: Path) -> list[tuple[str, str]]:
    """(file, selector type) of every input of every blueprint under `folder`."""
    out: list[tuple[str, str]] = []

    def walk(inputs: Any, where: str) -> None:
        for item in (inputs or {}).values():
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("input"), dict):  # a section of inputs
                walk(item["input"], where)
            for kind in item.get("selector") or {}:
                out.append((where, kind))

    for path in sorted(folder.rglob("*.yaml")):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        walk((doc.get("blueprint") or {}).get("input"), path.name)
    return out


def release_selectors(ha: Path) -> set[str]:
    text = (ha / "homeassistant" / "helpers" / "selector.py").read_text(encoding="utf-8")
    return set(re.findall(r"@SELECTORS\.register\(\"(\w+)\"\)", text))


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--ha", type=Path, required=True, help="where homeassistant/ is unpacked")
    args.add_argument("--integration", type=Path, required=True)
    args.add_argument("--release", required=True, help="the release unpacked, e.g. 2026.11.0")
    args.add_argument("--blueprints", type=Path)
    a = args.parse_args(argv)
    calls, modules = integration_calls(a.integration)
    due_by = next_release(a.release)
    breaks = [x for f in files_of(a.ha, modules) for x in announced(f, a.ha)]
    failed = 0
    for call in calls:
        for b in breaks:
            if b.name != call.name or not b.reachable_by(call):
                continue
            due = _month(b.version) <= due_by
            failed += due
            word = "DUE" if due else "later"
            print(f"{word}: {call.where} calls {call.name}: {b.where} breaks in {b.version}")
            print(f"       {b.text}")
    if a.blueprints is not None:
        known = release_selectors(a.ha)
        for where, kind in blueprint_selectors(a.blueprints):
            if kind not in known:
                failed += 1
                print(f"DUE: blueprint {where} uses selector '{kind}', which {a.release} lacks")
    print(
        f"ha_source_check: {len(calls)} calls against {len(breaks)} announced breaks in "
        f"{a.release}; {failed} due by {due_by[0]}.{due_by[1]}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
