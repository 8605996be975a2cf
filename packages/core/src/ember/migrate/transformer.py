"""Rewrite one module's NVFlare imports and names to Ember with libcst.

Pass 1 (:class:`_Collector`) records what each NVFlare import binds and resolves every use
of those names (``flare.FLModel``, ``NPConstants.NUMPY_KEY``, ``nvflare.client.init``);
:func:`_plan` decides which imports each use needs; pass 2 (:class:`_Rewriter`) applies it.
Only the import lines and the names that change are touched, so comments and formatting stay.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Literal

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from ember.migrate.mapping import KEYWORDS, MODULES, Target, Unmapped, module_of, resolve


@dataclass(frozen=True)
class Change:
    line: int
    old: str
    new: str


@dataclass(frozen=True)
class Problem:
    line: int
    name: str
    reason: str


@dataclass
class MigrationResult:
    code: str
    changes: list[Change]
    problems: list[Problem]


# ("import", module, asname) or ("from", module, name, asname)
_Need = tuple[str, ...]
_Import = cst.Import | cst.ImportFrom


@dataclass
class _Binding:
    local: str
    qualname: str
    kind: Literal["module", "plain", "name"]
    stmt: _Import
    alias: cst.ImportAlias
    line: int
    needs: list[_Need] = field(default_factory=list)
    used: bool = False
    keep: bool = False


@dataclass
class _Use:
    binding: _Binding
    node: cst.BaseExpression
    parts: list[str]
    depth: int
    target: Target
    line: int


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    raise ValueError(f"not a dotted name: {node!r}")


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node).strip()


def _is_nvflare(module: str) -> bool:
    return module == "nvflare" or module.startswith("nvflare.")


class _Collector(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, ParentNodeProvider)

    def __init__(self) -> None:
        self.bindings: dict[str, _Binding] = {}
        self.all_bindings: list[_Binding] = []
        self.uses: list[_Use] = []
        self.problems: list[Problem] = []
        self.call_targets: dict[cst.BaseExpression, str] = {}
        self.keywords: dict[cst.Arg, str] = {}
        self.changes: list[Change] = []

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _bind(self, binding: _Binding) -> None:
        self.bindings[binding.local] = binding
        self.all_bindings.append(binding)

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            full = _dotted(alias.name)
            if not _is_nvflare(full):
                continue
            if alias.asname is not None:
                local = _dotted(alias.asname.name)
                self._bind(_Binding(local, full, "module", node, alias, self._line(node)))
            else:
                self._bind(_Binding("nvflare", full, "plain", node, alias, self._line(node)))
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if node.relative or node.module is None:
            return False
        module = _dotted(node.module)
        if not _is_nvflare(module):
            return False
        if isinstance(node.names, cst.ImportStar):
            self.problems.append(
                Problem(self._line(node), f"{module}.*", "import the names you use explicitly")
            )
            return False
        for alias in node.names:
            name = _dotted(alias.name)
            local = _dotted(alias.asname.name) if alias.asname else name
            qual = f"{module}.{name}"
            kind: Literal["module", "name"] = "module" if qual in MODULES else "name"
            self._bind(_Binding(local, qual, kind, node, alias, self._line(node)))
        return False

    def visit_Name(self, node: cst.Name) -> None:
        binding = self.bindings.get(node.value)
        if binding is None:
            return
        parent = self.get_metadata(ParentNodeProvider, node)
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            return
        if isinstance(parent, cst.Arg) and parent.keyword is node:
            return
        if isinstance(parent, cst.Param | cst.FunctionDef | cst.ClassDef) and parent.name is node:
            return
        chain: list[cst.BaseExpression] = [node]
        while isinstance(parent, cst.Attribute) and parent.value is chain[-1]:
            chain.append(parent)
            parent = self.get_metadata(ParentNodeProvider, parent)
        parts = [node.value] + [a.attr.value for a in chain[1:] if isinstance(a, cst.Attribute)]
        self._resolve_use(binding, chain, parts)

    def _qualname(self, binding: _Binding, parts: list[str], depth: int) -> str:
        if binding.kind == "plain":
            return ".".join(parts[: depth + 1])
        return ".".join([binding.qualname, *parts[1 : depth + 1]])

    def _resolve_use(
        self, binding: _Binding, chain: list[cst.BaseExpression], parts: list[str]
    ) -> None:
        binding.used = True
        target: Target | None = None
        depth = len(parts) - 1
        for depth in range(len(parts) - 1, -1, -1):
            target = resolve(self._qualname(binding, parts, depth))
            if target is not None:
                break
        if target is None:
            depth = len(parts) - 1
            full = self._qualname(binding, parts, depth)
            target = Unmapped(f"no Ember equivalent known for {full}")
        line = self._line(chain[0])
        self.uses.append(_Use(binding, chain[depth], parts, depth, target, line))
        if isinstance(target, str) and depth == len(parts) - 1:
            module, path = module_of(target)
            self.call_targets[chain[-1]] = f"{module}.{path}"

    def leave_Call(self, original_node: cst.Call) -> None:
        target = self.call_targets.get(original_node.func)
        if target is None:
            return
        renames = KEYWORDS.get(target, {})
        accepted = _parameters(target)
        for arg in original_node.args:
            if arg.keyword is None:
                continue
            old = arg.keyword.value
            new = renames.get(old, old)
            if new != old:
                self.keywords[arg] = new
                self.changes.append(Change(self._line(arg), f"{old}=", f"{new}="))
            if accepted is not None and new not in accepted:
                self.problems.append(
                    Problem(
                        self._line(arg),
                        f"{target.rsplit('.', 1)[-1]}({old}=...)",
                        f"{target} has no parameter {new!r}",
                    )
                )


def _parameters(target: str) -> set[str] | None:
    """The keyword names ``target`` accepts, or None when unknown or it takes ``**kwargs``."""
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
        params = inspect.signature(obj).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _plan(collector: _Collector) -> tuple[dict[cst.CSTNode, str], list[Change], list[Problem]]:
    """Decide every use's replacement and the imports each NVFlare import line becomes."""
    replace: dict[cst.CSTNode, str] = {}
    changes: list[Change] = []
    problems: list[Problem] = []
    for use in collector.uses:
        b = use.binding
        own = resolve(b.qualname) if b.kind != "plain" else None
        old = _code(use.node)
        if isinstance(use.target, Unmapped):
            b.keep = b.kind == "name" or (b.kind == "module" and not isinstance(own, str))
            if not (b.kind == "name" and use.depth == 0):
                problems.append(Problem(use.line, old, use.target.reason))
            continue
        module, path = module_of(use.target)
        used_path = ".".join(use.parts[1 : use.depth + 1])
        if b.kind == "module" and own == f"{module}:" and path == used_path:
            b.needs.append(("import", module, b.local))
            continue
        if b.kind == "name" and use.depth == 0 and path and "." not in path:
            b.needs.append(("from", module, path, b.local if b.local != path else ""))
            continue
        if b.kind == "plain":
            new = f"{module}.{path}" if path else module
            b.needs.append(("import", module, ""))
        else:
            new = path or module
            head = path.split(".")[0]
            b.needs.append(("from", module, head, "") if path else ("import", module, ""))
        replace[use.node] = new
        if new != old:
            changes.append(Change(use.line, old, new))
    for b in collector.all_bindings:
        if b.used:
            continue
        own = resolve(b.qualname)
        if isinstance(own, str) and own.endswith(":"):
            b.needs.append(("import", own[:-1], "" if b.kind == "plain" else b.local))
        elif isinstance(own, str) and b.kind == "name":
            module, path = module_of(own)
            if "." not in path:
                b.needs.append(("from", module, path, b.local if b.local != path else ""))
            else:
                b.keep = True
                problems.append(Problem(b.line, b.qualname, f"use {module}.{path} instead"))
        else:
            b.keep = True
    for b in collector.all_bindings:
        own = resolve(b.qualname)
        if b.keep and isinstance(own, Unmapped) and (b.kind == "name" or not b.used):
            problems.append(Problem(b.line, b.qualname, own.reason))
        elif b.keep and own is None and (b.kind == "name" or not b.used):
            problems.append(
                Problem(b.line, b.qualname, f"no Ember equivalent known for {b.qualname}")
            )
    return replace, changes, problems


@dataclass
class _Notes:
    """The comments inside one import's parentheses, by where they sit.

    ``leading`` holds the comment lines above an alias, ``trailing`` the comments on its
    line; ``opening`` is the comment after ``(``, ``closing`` the lines above ``)``.
    """

    leading: dict[int, list[str]] = field(default_factory=dict)
    trailing: dict[int, list[str]] = field(default_factory=dict)
    opening: str | None = None
    closing: list[str] = field(default_factory=list)
    indent: str = "    "
    multiline: bool = False


@dataclass
class _Item:
    """One name in a generated import, with the comments that travel with it."""

    text: str
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)


@dataclass
class _Stmt:
    """A generated import: ``import <item>`` or ``from <module> import <items>``."""

    module: str | None
    items: list[_Item]
    opening: str | None = None
    closing: list[str] = field(default_factory=list)
    indent: str = "    "
    multiline: bool = False  # the original spread its names over lines in parentheses

    def flat(self) -> str:
        names = ", ".join(i.text for i in self.items)
        return f"import {names}" if self.module is None else f"from {self.module} import {names}"

    def has_comments(self) -> bool:
        return bool(
            self.opening or self.closing or any(i.leading or i.trailing for i in self.items)
        )


def _ws_comments(ws: cst.CSTNode | None) -> tuple[str | None, list[str]]:
    """(the comment ending the line, the comment lines below it) of a whitespace node."""
    if not isinstance(ws, cst.ParenthesizedWhitespace):
        return None, []
    first = ws.first_line.comment.value if ws.first_line.comment else None
    return first, [e.comment.value for e in ws.empty_lines if e.comment]


class _CommentFinder(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.found.append(node.value)


def _all_comments(node: cst.CSTNode) -> list[str]:
    finder = _CommentFinder()
    node.visit(finder)
    return finder.found


def _notes(stmt: _Import) -> _Notes:
    """Where the comments inside ``from x import (...)`` sit (none elsewhere: no parentheses)."""
    notes = _Notes()
    if not isinstance(stmt, cst.ImportFrom) or stmt.lpar is None or stmt.rpar is None:
        return notes
    assert not isinstance(stmt.names, cst.ImportStar)
    opening = stmt.lpar.whitespace_after
    if isinstance(opening, cst.ParenthesizedWhitespace):
        notes.multiline = True
        notes.indent = opening.last_line.value or notes.indent
    notes.opening, notes.leading[0] = _ws_comments(opening)
    last = len(stmt.names) - 1
    for i, alias in enumerate(stmt.names):
        # comments within the alias itself (``X as  # c`` on two lines) stay on its line
        inner = _all_comments(alias.with_changes(comma=cst.MaybeSentinel.DEFAULT))
        after: list[cst.CSTNode] = []
        if isinstance(alias.comma, cst.Comma):
            inner += _all_comments(alias.comma.whitespace_before)
            after.append(alias.comma.whitespace_after)
        if i == last:
            after.append(stmt.rpar.whitespace_before)
        below: list[str] = []
        for ws in after:
            first, lines = _ws_comments(ws)
            if first is not None and not below:
                inner.append(first)
            elif first is not None:
                below.append(first)
            below += lines
        notes.trailing[i] = inner
        if i < last:
            notes.leading[i + 1] = below
        else:
            notes.closing = below
    return notes


def _flat(stmt: _Import) -> str:
    """An import on one line, without comments: how the report shows it."""
    if isinstance(stmt, cst.Import):
        return "import " + ", ".join(_alias_text(a) for a in stmt.names)
    module = "." * len(stmt.relative) + (_dotted(stmt.module) if stmt.module else "")
    if isinstance(stmt.names, cst.ImportStar):
        return f"from {module} import *"
    return f"from {module} import " + ", ".join(_alias_text(a) for a in stmt.names)


def _alias_text(alias: cst.ImportAlias) -> str:
    name = _dotted(alias.name)
    if alias.asname is None:
        return name
    return f"{name} as {_dotted(alias.asname.name)}"


def _import_stmts(stmt: _Import, bindings: list[_Binding], seen: set[_Need]) -> list[_Stmt]:
    """The Ember imports one NVFlare import becomes, plus what of it must stay.

    Comments inside the original's parentheses go with the name they annotate (to that
    name's first replacement), or to the next name when it has none.
    """
    notes = _notes(stmt)
    aliases = list(stmt.names) if not isinstance(stmt.names, cst.ImportStar) else []
    plain: list[_Stmt] = []
    froms: dict[str, _Stmt] = {}
    kept: list[_Item] = []
    pending: list[str] = []
    for b in bindings:
        index = next((i for i, a in enumerate(aliases) if a is b.alias), -1)
        items: list[_Item] = []
        for need in b.needs:
            if need in seen:
                continue
            seen.add(need)
            if need[0] == "import":
                _, module, asname = need
                item = _Item(f"{module} as {asname}" if asname else module)
                plain.append(_Stmt(None, [item]))
            else:
                _, module, name, asname = need
                item = _Item(f"{name} as {asname}" if asname else name)
                froms.setdefault(module, _Stmt(module, [])).items.append(item)
            items.append(item)
        if b.keep:
            item = _Item(_alias_text(b.alias))
            kept.append(item)
            items.append(item)
        pending += notes.leading.get(index, [])
        if items:
            items[0].leading = pending
            items[0].trailing = notes.trailing.get(index, [])
            pending = []
        else:
            pending += notes.trailing.get(index, [])
    stmts = plain + list(froms.values())
    if kept:
        source = stmt.module if isinstance(stmt, cst.ImportFrom) else None
        stmts.append(_Stmt(_dotted(source) if source is not None else None, kept))
    pending += notes.closing
    if stmts:
        first_from = next((s for s in stmts if s.module is not None), None)
        if notes.opening is not None and first_from is not None:
            first_from.opening = notes.opening
        elif notes.opening is not None:
            stmts[0].items[0].leading.insert(0, notes.opening)
        stmts[-1].closing = pending
    elif pending or notes.opening:
        # nothing left of the import: its comments stay, on a ``pass``
        stmts.append(_Stmt(None, [], closing=[*filter(None, [notes.opening]), *pending]))
    for s in stmts:
        s.indent, s.multiline = notes.indent, notes.multiline
    return stmts


def _render(stmt: _Stmt) -> str:
    """Source for one generated import (comment lines above it included)."""
    if not stmt.items:
        return "".join(f"{c}\n" for c in stmt.closing) + "pass"
    if stmt.module is None or not (stmt.multiline or stmt.has_comments()):
        # no parentheses to hold comments: lines above, the rest at the end of the line
        above = [c for i in stmt.items for c in i.leading] + stmt.closing
        after = [c for i in stmt.items for c in i.trailing]
        if stmt.opening:
            above.insert(0, stmt.opening)
        code = stmt.flat() + "".join(f"  {c}" for c in after)
        return "".join(f"{c}\n" for c in above) + code
    lines = [f"from {stmt.module} import (" + (f"  {stmt.opening}" if stmt.opening else "")]
    for item in stmt.items:
        lines += [f"{stmt.indent}{c}" for c in item.leading]
        lines.append(f"{stmt.indent}{item.text}," + "".join(f"  {c}" for c in item.trailing))
    lines += [f"{stmt.indent}{c}" for c in stmt.closing]
    return "\n".join([*lines, ")"])


class _Rewriter(cst.CSTTransformer):
    def __init__(
        self,
        replace: dict[cst.CSTNode, str],
        keywords: dict[cst.Arg, str],
        imports: dict[cst.CSTNode, list[str]],
    ) -> None:
        self.replace = replace
        self.keywords = keywords
        self.imports = imports

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        if original_node in self.replace:
            return cst.parse_expression(self.replace[original_node])
        return updated_node

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        if original_node in self.replace:
            return cst.parse_expression(self.replace[original_node])
        return updated_node

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        if original_node in self.keywords:
            return updated_node.with_changes(keyword=cst.Name(self.keywords[original_node]))
        return updated_node

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        if not any(s in self.imports for s in original_node.body):
            return updated_node
        codes: list[str] = []
        for original, updated in zip(original_node.body, updated_node.body, strict=True):
            codes.extend(self.imports[original] if original in self.imports else [_code(updated)])
        if not codes:
            if any(line.comment for line in original_node.leading_lines):
                codes = ["pass"]
            else:
                return cst.RemovalSentinel.REMOVE
        lines = [cst.parse_statement(code + "\n") for code in codes]
        first = lines[0]
        assert isinstance(first, cst.SimpleStatementLine)  # small statements, never compound
        leading = [*original_node.leading_lines, *first.leading_lines]
        trailing = original_node.trailing_whitespace
        if first.trailing_whitespace.comment is not None:  # the generated line has its own
            comments = [first.trailing_whitespace.comment.value]
            if trailing.comment is not None:
                comments.append(trailing.comment.value)
            trailing = trailing.with_changes(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment("  ".join(comments))
            )
        lines[0] = first.with_changes(leading_lines=leading, trailing_whitespace=trailing)
        return cst.FlattenSentinel(lines)


def migrate_source(source: str) -> MigrationResult:
    """Rewrite ``source``'s NVFlare names; raises ``libcst.ParserSyntaxError`` on bad syntax."""
    wrapper = MetadataWrapper(cst.parse_module(source))
    collector = _Collector()
    wrapper.visit(collector)
    replace, changes, problems = _plan(collector)
    by_stmt: dict[_Import, list[_Binding]] = {}
    for b in collector.all_bindings:
        by_stmt.setdefault(b.stmt, []).append(b)
    seen: set[_Need] = set()
    imports: dict[cst.CSTNode, list[str]] = {}
    import_changes: list[Change] = []
    for stmt, bindings in by_stmt.items():
        stmts = _import_stmts(stmt, bindings, seen)
        old = _flat(stmt)
        new = "; ".join(s.flat() for s in stmts if s.items) or "(removed)"
        if new != old:  # else all of it stays: left as it was written
            imports[stmt] = [_render(s) for s in stmts]
            import_changes.append(Change(bindings[0].line, old, new))
    code = wrapper.module.visit(_Rewriter(replace, collector.keywords, imports)).code
    all_changes = sorted([*import_changes, *changes, *collector.changes], key=lambda c: c.line)
    all_problems = sorted([*collector.problems, *problems], key=lambda p: p.line)
    return MigrationResult(code, all_changes, _unique(all_problems))


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
