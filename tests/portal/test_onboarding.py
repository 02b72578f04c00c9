"""Issue 18.7: the portal says how to use it from Python, and loads nothing from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
# An asset the browser fetches by itself: script and img sources, stylesheets and icons, CSS url().
ASSET = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*["']?([^"'\s>]+)"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?([^"'\s>]+)"""
    r"""|url\(\s*["']?([^"')\s]+)""",
    re.I,
)


def external_assets(text: str) -> list[str]:
    urls = [next(g for g in match.groups() if g) for match in ASSET.finditer(text)]
    return [u for u in urls if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", u, re.I)]


def test_the_scan_finds_an_asset_from_a_cdn():
    page = '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist/swagger-ui-bundle.js"></script>'
    assert external_assets(page) == ["https://cdn.jsdelivr.net/npm/swagger-ui-dist/swagger-ui-bundle.js"]
    assert external_assets("<link rel=stylesheet href=//fonts.example/x.css>") == ["//fonts.example/x.css"]
    assert external_assets('<script src="/static/vendor/htmx.min.js"></script>') == []


def test_no_template_or_stylesheet_loads_an_asset_from_another_site():
    files = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("static/tweezer/*.css")]
    assert files
    found = {str(f.relative_to(ROOT)): external_assets(f.read_text()) for f in files}
    assert not {name: urls for name, urls in found.items() if urls}


@pytest.mark.django_db
def test_the_api_docs_page_serves_swagger_ui_from_vendored_static_files():
    page = Client().get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert external_assets(html) == []
    assert '<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"' in html
    assert (ROOT / "static/vendor/swagger-ui/swagger-ui-bundle.js").stat().st_size > 100_000
    assert '"validatorUrl": null' in html  # no call to validator.swagger.io either
    assert "<script>" not in html  # no inline script: the CSP allows 'self' only


@pytest.mark.django_db
def test_the_tokens_page_gives_the_project_id_endpoints_and_a_snippet_with_the_new_token(member):
    client = Client()
    client.force_login(member.user)
    before = client.get(reverse("tokens")).content.decode()
    panel = before[before.index('id="use-from-python"') :].replace("&quot;", '"')
    assert f'<span class="mono" id="project-id">{member.project_id}</span>' in panel
    assert "http://testserver/core" in panel and "http://testserver/account" in panel
    assert f'project_id="{member.project_id}"' in panel and "&lt;your API token&gt;" in panel
    assert panel.count("data-copy=") == 4
    after = client.post(reverse("tokens"), {"name": "laptop"}, follow=True).content.decode()
    plain = re.search(r'id="token-value">([^<]+)<', after)
    assert plain
    assert 'data-copy="token-value"' in after
    assert f'return "{plain.group(1)}"' in after.replace("&quot;", '"')
