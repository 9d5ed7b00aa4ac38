"""/docs and /redoc render in Chromium with every request off the server blocked (no CDN)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Route, expect

from helpers.live_server import LiveServer


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock"),  # an operation: the spec was read and laid out
        ("/redoc", "[data-section-id^='operation/']"),
    ],
)
async def test_api_docs_render_offline(
    browser: Browser, web_server: LiveServer, path: str, rendered: str
) -> None:
    context = await browser.new_context()
    blocked: list[str] = []

    async def only_the_server(route: Route) -> None:
        if route.request.url.startswith(web_server.http_url):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_server)
    try:
        page = await context.new_page()
        await page.goto(f"{web_server.http_url}{path}")
        await expect(page.locator(rendered).first).to_be_visible(timeout=15_000)
        await expect(page.get_by_role("heading", name="Syncline").first).to_be_visible()
        # ReDoc's "API docs by Redocly" footer has its logo on their CDN: decoration only.
        assert [url for url in blocked if not url.endswith("/redoc/logo-mini.svg")] == []
    finally:
        await context.close()
