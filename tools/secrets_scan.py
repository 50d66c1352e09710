#!/usr/bin/env python3
"""Scan run output for leaked secrets and tokens.

Looks, in every file under the given paths (``output.xml``, ``log.html``, ``report.html``,
summaries, console captures, backend logs ...), for

* each given secret in full: as is, percent-encoded, hex, base64 and base64url (at every
  byte alignment, so also inside a longer encoded blob), and its base64-decoded bytes;
* any signed JWT (``eyJ<header>.eyJ<claims>.<signature>``): tokens are random, so any
  real one in the output is a leak, whatever secret signed it.

Robot's ``log.html``/``report.html`` keep their texts zlib-compressed and base64-encoded
in ``window.output["strings"]`` (an entry starting with ``*`` is stored as is); those are
decoded before scanning, and so is any other base64 blob that decodes to text.

Findings are printed masked (kind, file, where; never the value). Exit code 1 when
anything is found, 0 when clean, 2 on bad usage.

    python tools/secrets_scan.py --secret-env E2E_JWT_SECRET --secret-env E2E_OAUTH_SIMULATION_KEY results/

Secrets are read from environment variables (``--secret-env``) or files
(``--secret-file``, one secret per line), never from the command line, so the scan
itself does not put them in the process table or a shell history.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{16,}")
B64_BLOB = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")
STRINGS = re.compile(r'window\.output\["strings"\]\s*=\s*window\.output\["strings"\]\.concat\((\[.*?\])\);',
                     re.DOTALL)
JS_HEX_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9a-fA-F]{2})")  # JS \x3c, not JSON
MIN_SECRET = 8          # shorter "secrets" would match by chance
MAX_FILE = 200 * 2**20  # bytes; larger files are reported as not scanned


@dataclass(frozen=True)
class Finding:
    path: str
    where: str   # "raw", "robot log string #12", "base64 blob at 1234", ...
    kind: str    # "secret #1 as base64url", "JWT" ...
    excerpt: str  # masked

    def __str__(self) -> str:
        return f"{self.path}: {self.kind} in {self.where}: {self.excerpt}"


def _mask(value: str) -> str:
    return f"{value[:4]}…({len(value)} chars)" if len(value) > 8 else f"…({len(value)} chars)"


def _b64_cores(data: bytes, alphabet: str) -> list[str]:
    """Substrings that every base64 encoding of a text containing ``data`` must contain,
    one per byte alignment (0, 1, 2 bytes before it in its 3-byte group)."""
    enc = base64.b64encode if alphabet == "std" else base64.urlsafe_b64encode
    cores = []
    for offset in range(3):
        encoded = enc(b"\0" * offset + data).decode().rstrip("=")
        start = 4 if offset else 0           # the group holding the pad bytes
        usable = (offset + len(data)) // 3 * 4  # whole groups only: the last one depends on what follows
        core = encoded[start:usable]
        if len(core) >= MIN_SECRET:
            cores.append(core)
    return cores


def encoded_forms(secret: str) -> dict[str, str]:
    """Every form of ``secret`` looked for, by name (the value itself under ``raw``)."""
    data = secret.encode()
    forms = {"raw": secret, "percent-encoded": quote(secret, safe=""), "hex": data.hex()}
    for alphabet in ("std", "url"):
        for i, core in enumerate(_b64_cores(data, alphabet)):
            forms[f"{'base64' if alphabet == 'std' else 'base64url'} (alignment {i})"] = core
    try:  # a secret that is itself base64(url): its decoded bytes, shown as hex/latin-1 text
        decoded = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        if len(decoded) >= MIN_SECRET:
            forms["base64-decoded (hex)"] = decoded.hex()
            forms["base64-decoded (latin-1)"] = decoded.decode("latin-1")
    except (binascii.Error, ValueError):
        pass
    unique: dict[str, str] = {}
    for name, value in forms.items():  # e.g. percent-encoding changes nothing in a urlsafe secret
        if len(value) >= MIN_SECRET and value not in unique.values():
            unique[name] = value
    return unique


class UnreadableLog(ValueError):
    """A Robot log/report whose string table could not be parsed: it was not scanned."""


def robot_log_strings(text: str) -> list[str]:
    """The texts of a Robot ``log.html``/``report.html`` model, decompressed.

    Raises :class:`UnreadableLog` when a string table is there but does not parse, so a
    change of Robot's format can never make a scan pass by reading nothing."""
    out = []
    for match in STRINGS.finditer(text):
        try:
            entries = json.loads(JS_HEX_ESCAPE.sub(r"\1\\u00\2", match.group(1)))
        except ValueError as err:
            raise UnreadableLog(f"window.output[\"strings\"] at {match.start()} is not readable: {err}") from None
        for entry in entries:
            if not isinstance(entry, str):
                continue
            if entry.startswith("*"):
                out.append(entry[1:])
                continue
            try:
                out.append(zlib.decompress(base64.b64decode(entry)).decode("utf-8", "replace"))
            except (binascii.Error, zlib.error, ValueError):
                out.append(entry)
    return out


def _decoded_blobs(text: str) -> list[tuple[int, str]]:
    """Base64/base64url blobs in ``text`` that decode to (mostly printable) text."""
    out = []
    for match in B64_BLOB.finditer(text):
        blob = match.group(0)
        if blob.startswith("eyJ"):  # a JWT segment: the JWT check sees it as is
            continue
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(blob + "=" * (-len(blob) % 4))
            except (binascii.Error, ValueError):
                continue
            for data in (raw, _inflate(raw)):
                if not data:
                    continue
                decoded = data.decode("utf-8", "replace")
                printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
                if printable >= 0.9 * len(decoded):
                    out.append((match.start(), decoded))
            break
    return out


def _inflate(data: bytes) -> bytes | None:
    try:
        return zlib.decompress(data)
    except zlib.error:
        return None


def scan_text(text: str, secrets: list[str], path: str = "<text>", where: str = "raw", depth: int = 0) -> list[Finding]:
    """Findings in one text; base64 blobs in it are decoded and scanned too (one level)."""
    findings = []
    variants = [text]
    unescaped = html.unescape(text)
    if unescaped != text:
        variants.append(unescaped)
    seen: set[tuple[str, str]] = set()
    for variant in variants:
        for n, secret in enumerate(secrets, 1):
            for form, value in encoded_forms(secret).items():
                if value in variant and (form, str(n)) not in seen:
                    seen.add((form, str(n)))
                    findings.append(Finding(path, where, f"secret #{n} as {form}", _mask(value)))
        for match in JWT.finditer(variant):
            if ("jwt", match.group(0)) not in seen:
                seen.add(("jwt", match.group(0)))
                findings.append(Finding(path, where, "JWT-shaped token", _mask(match.group(0))))
    if depth == 0:
        for offset, decoded in _decoded_blobs(text):
            findings += scan_text(decoded, secrets, path, f"{where}, base64 blob at {offset}", depth + 1)
    return findings


def scan_file(path: Path, secrets: list[str]) -> list[Finding]:
    if path.stat().st_size > MAX_FILE:
        return [Finding(str(path), "whole file", "NOT SCANNED (too large)", f"{path.stat().st_size} bytes")]
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    findings = scan_text(text, secrets, str(path))
    for n, secret in enumerate(secrets, 1):  # secrets in a non-UTF-8 file, as bytes
        if secret.encode() in data and not any(f.kind == f"secret #{n} as raw" for f in findings):
            findings.append(Finding(str(path), "bytes", f"secret #{n} as raw", _mask(secret)))
    if 'window.output["strings"]' in text:
        try:
            strings = robot_log_strings(text)
        except UnreadableLog as err:
            return findings + [Finding(str(path), "robot log model", "NOT SCANNED (unreadable)", str(err)[:200])]
        if not strings:
            return findings + [Finding(str(path), "robot log model", "NOT SCANNED (no strings found)", "")]
        for i, string in enumerate(strings):
            findings += scan_text(string, secrets, str(path), f"robot log string #{i}")
    return findings


def iter_files(paths: list[Path]):
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def scan_paths(paths: list[Path | str], secrets: list[str]) -> list[Finding]:
    secrets = [s for s in secrets if s]
    short = [s for s in secrets if len(s) < MIN_SECRET]
    if short:
        raise ValueError(f"{len(short)} secret(s) shorter than {MIN_SECRET} characters: too short to scan for reliably")
    findings = []
    for path in iter_files([Path(p) for p in paths]):
        findings += scan_file(path, secrets)
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders to scan")
    parser.add_argument("--secret-env", action="append", default=[], metavar="NAME",
                        help="environment variable holding a secret (repeatable)")
    parser.add_argument("--secret-file", action="append", default=[], type=Path, metavar="PATH",
                        help="file with one secret per line (repeatable)")
    args = parser.parse_args(argv)
    secrets = []
    for name in args.secret_env:
        value = os.environ.get(name)
        if not value:
            parser.error(f"--secret-env {name}: the variable is not set")
        secrets.append(value)
    for file in args.secret_file:
        try:
            secrets += [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as err:
            parser.error(f"--secret-file {file}: {err.strerror}")
    try:
        findings = scan_paths(args.paths, secrets)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    files = sum(1 for _ in iter_files(args.paths))
    for finding in findings:
        print(f"LEAK {finding}")
    print(f"secrets_scan: {files} file(s), {len(secrets)} secret(s) + any JWT: "
          + (f"{len(findings)} finding(s)" if findings else "clean"))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
