"""Static checks of the explorer page (cheesecoin/explorer): fast, no browser, no network.

The page must work offline (nothing fetched from the internet), keep the element
ids that tests and scripts rely on, and never turn API data into HTML.
"""

import os
import re

import pytest

EXPLORER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "cheesecoin", "web", "explorer"
)
FILES = ("index.html", "style.css", "app.js")
IDS = ("height", "tip", "network", "work", "bits", "hashrate", "peers", "mempool", "cheeses")


def read(name):
    with open(os.path.join(EXPLORER, name), encoding="utf-8") as f:
        return f.read()


def without_js_comments(js):
    js = re.sub(r"/\*.*?\*/", "", js, flags=re.S)
    return re.sub(r"^\s*//.*$", "", js, flags=re.M)


@pytest.mark.parametrize("name", FILES)
def test_file_exists_and_is_not_empty(name):
    path = os.path.join(EXPLORER, name)
    assert os.path.isfile(path)
    assert os.path.getsize(path) > 100


def test_index_references_only_relative_local_resources():
    html = read("index.html")
    refs = re.findall(
        r"""\b(?:src|href|action|poster|data)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I
    )
    assert refs, "no src/href found at all"
    for ref in refs:
        low = ref.lower()
        assert not low.startswith(("http:", "https:", "//", "/", "ftp:", "javascript:")), ref
    assert re.search(r"""<link[^>]+href=["']style\.css["']""", html)
    assert re.search(r"""<script[^>]+src=["']app\.js["']""", html)
    assert not re.search(r"https?://|@import", html, flags=re.I)


def test_css_fetches_nothing_from_outside():
    css = read("style.css")
    assert not re.search(r"@import|@font-face|https?:|url\(\s*['\"]?//", css, flags=re.I)


def test_js_fetches_only_this_member():
    js = without_js_comments(read("app.js"))
    # The only absolute URL allowed is the SVG namespace (an identifier, never fetched).
    for url in re.findall(r"https?://[^\s\"']+", js):
        assert url == "http://www.w3.org/2000/svg", url
    assert "XMLHttpRequest" not in js and "WebSocket" not in js and "importScripts" not in js
    for target in re.findall(r"""\bapi\(\s*["']([^"']*)""", js):
        assert target.startswith("/api/"), target


def test_js_never_parses_html():
    js = without_js_comments(read("app.js"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "srcdoc",
        "eval(",
        "new Function",
        'setTimeout("',
        "setTimeout('",
    ):
        assert sink not in js, sink


def test_key_element_ids_are_in_index():
    html = read("index.html")
    for element_id in IDS:
        assert len(re.findall(r"""\bid=["']%s["']""" % element_id, html)) == 1, element_id
    assert re.search(r"""<tbody[^>]*\bid=["']cheeses["']""", html)


def test_ids_used_by_js_exist():
    html = read("index.html")
    declared = set(re.findall(r"""\bid=["']([^"']+)["']""", html))
    js = without_js_comments(read("app.js"))
    used = set(re.findall(r"""(?:\$|setText|getElementById)\(\s*["']([\w-]+)["']""", js))
    assert used, "the script looks up no ids?"
    assert used <= declared, sorted(used - declared)
