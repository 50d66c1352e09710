"""``agentkit.wire`` and ``agentkit.rules`` stay pure (docs: DESIGN, "a pure top"): no
module there imports sockets, threads, asyncio, subprocesses or HTTP/WebSocket clients.
I/O belongs to ``agentkit.transports``. Read with ``ast``: nothing is imported to check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rules_helpers import ROOT

PURE = [ROOT / "libraries" / "agentkit" / "wire", ROOT / "libraries" / "agentkit" / "rules"]
FORBIDDEN = ("socket", "threading", "_thread", "asyncio", "selectors", "requests", "urllib3",
             "http.client", "urllib.request", "websocket", "websockets", "concurrent.futures", "subprocess",
             "multiprocessing", "httpx", "aiohttp")
DYNAMIC = {"__import__", "import_module"}


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Every absolute module a source imports (``from a import b`` also counts as ``a.b``),
    including ``__import__('x')`` and ``importlib.import_module('x')`` with a literal name."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in DYNAMIC and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    found = []
    for line, module in imported_modules(source, filename):
        for bad in FORBIDDEN:
            if module == bad or module.startswith(bad + "."):
                found.append(f"{filename}:{line} imports {module}")
    return sorted(set(found))


def modules() -> list[Path]:
    return sorted(p for folder in PURE for p in folder.rglob("*.py"))


def test_the_pure_packages_are_where_the_test_looks():
    names = {p.relative_to(ROOT / "libraries").as_posix() for p in modules()}
    for expected in ("agentkit/wire/session.py", "agentkit/wire/event.py", "agentkit/wire/dialect.py",
                     "agentkit/rules/__init__.py", "agentkit/rules/agui.py", "agentkit/rules/protocol.py"):
        assert expected in names


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(ROOT / "libraries").as_posix())
def test_a_pure_module_imports_no_io(path):
    found = forbidden_imports(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert not found, "wire/ and rules/ must stay free of I/O (it belongs in agentkit/transports):\n" + "\n".join(found)


@pytest.mark.parametrize("source, module", [
    ("import socket", "socket"),
    ("import threading as t", "threading"),
    ("from asyncio import Queue", "asyncio"),
    ("import selectors", "selectors"),
    ("def f():\n    import requests", "requests"),
    ("import urllib3", "urllib3"),
    ("from http import client", "http.client"),
    ("import http.client", "http.client"),
    ("from urllib import request", "urllib.request"),
    ("from urllib.request import urlopen", "urllib.request"),
    ("import websocket", "websocket"),
    ("from websockets.sync.client import connect", "websockets"),
    ("from concurrent.futures import ThreadPoolExecutor", "concurrent.futures"),
    ("from concurrent import futures", "concurrent.futures"),
    ("import subprocess", "subprocess"),
    ("import importlib\nimportlib.import_module('socket')", "socket"),
    ("__import__('threading')", "threading"),
])
def test_the_check_catches_each_kind_of_import(source, module):
    found = forbidden_imports(source, "planted.py")
    assert found and any(f"imports {module}" in line for line in found), found


@pytest.mark.parametrize("source", ["import json", "from urllib.parse import urlsplit", "import ssl",
                                    "from . import session", "from ..wire.event import Event", "import http",
                                    "from dataclasses import dataclass", "import websocket_names_are_not_this"])
def test_the_check_lets_pure_imports_pass(source):
    assert forbidden_imports(source) == []
