"""The web playground (dscoder/serve/static) in a real headless Chromium against a real `dscoder serve`.

Debian's chromium driven by Playwright (no browser download); the server is a subprocess on
a loopback port it picks itself (port 0) serving the tiny FIM model, behind an API key. Set DSCODER_SCREENSHOT=1
to also write benchmarks/playground.png (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from conftest import requires
from serve_live import dscoder_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
KEY = "playground-test-key"
ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 120_000  # generous: the machine may be busy; nothing here measures time


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")  # a dev package: strict mode fails on its skip
    if not os.access(CHROMIUM, os.X_OK):
        requires("chromium", f"{CHROMIUM} not found (apt-get install chromium; scripts/install-toolchains.sh does it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(fim_model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    with dscoder_serve(["--model", str(fim_model_dir), "--api-key", KEY, "--kv-cache-gib", "0.05"], log_path,
                       bound=300) as (_, url):
        yield url


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read())


def test_playground_chat_and_infill_in_chromium(browser, server, fim_model_dir, tmp_path):
    from playwright.sync_api import expect

    model_id = fim_model_dir.name
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)  # expect() has its own deadline (5 s), which a busy machine overruns
    page_errors, posts = [], []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)

    # Without the key the API refuses, and the status line says so; typing the key fixes it.
    page.goto(server + "/")
    expect(page.locator("#status")).to_contain_text("HTTP 401")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    expect(page.locator("#status")).to_have_text(f"model: {model_id} · ok")

    # The key may also come as /?key=..., and then leaves the address bar.
    page.goto(server + "/?key=" + KEY)
    expect(page.locator("#status")).to_have_text(f"model: {model_id} · ok")
    assert "key=" not in page.url
    page.fill("#max-tokens", "24")
    page.fill("#temperature", "0")

    # Chat: Shift+Enter is a newline, Enter sends; the answer streams into the log.
    page.evaluate("""() => {  // counts the streamed updates of the answer
        window.__updates = 0;
        new MutationObserver(records => window.__updates += records.length).observe(
            document.getElementById('chat-log'), {childList: true, subtree: true, characterData: true});
    }""")
    page.click("#chat-input")
    page.keyboard.type("Write add(a, b)")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("in Python.")
    page.keyboard.press("Enter")
    expect(page.locator("#chat-send")).to_be_enabled()  # disabled from the key press until the answer ends
    expect(page.locator("#chat-stop")).to_be_disabled()
    assert page.locator("#chat-log .msg.error").all_text_contents() == []
    answer = page.locator("#chat-log .msg.assistant").first
    expect(answer).to_have_text(re.compile(r"\S"))
    assert page.locator("#chat-log .msg.user").first.text_content() == "Write add(a, b)\nin Python."
    assert page.input_value("#chat-input") == ""
    assert page.evaluate("window.__updates") > 3  # the two messages, then the answer piece after piece
    chat = [r for r in posts if r.url.endswith("/v1/chat/completions")]
    assert len(chat) == 1 and chat[0].headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(chat[0].post_data) == {"model": model_id, "stream": True, "max_tokens": 24, "temperature": 0,
                                             "messages": [{"role": "user", "content": "Write add(a, b)\nin Python."}]}

    # A second turn carries the first answer as history.
    first_answer = answer.text_content().removesuffix(" (max tokens reached)")
    page.fill("#chat-input", "Shorter?")
    page.click("#chat-send")
    expect(page.locator("#chat-send")).to_be_enabled()
    assert page.locator("#chat-log .msg.error").all_text_contents() == []
    expect(page.locator("#chat-log .msg.assistant")).to_have_count(2)
    expect(page.locator("#chat-log .msg.assistant").nth(1)).to_have_text(re.compile(r"\S"))
    chat = [r for r in posts if r.url.endswith("/v1/chat/completions")]
    sent = json.loads(chat[-1].post_data)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"] and sent[2]["content"] == "Shorter?"
    assert sent[1]["content"] == first_answer

    # Stop aborts a long answer as soon as it streams (unless it was already done); what came stays.
    page.fill("#max-tokens", "300")  # the chat prompt is ~160 tokens of a 512 context
    page.fill("#chat-input", "And again, at length.")
    page.click("#chat-send")
    third = page.locator("#chat-log .msg.assistant").nth(2)
    expect(third).to_have_text(re.compile(r"\S"))
    page.click("#chat-stop")
    expect(page.locator("#chat-send")).to_be_enabled()
    expect(third).to_have_text(re.compile(r"\((stopped|max tokens reached)\)$"))
    page.fill("#max-tokens", "24")

    # Code: complete at the cursor; the middle lands exactly there, selected.
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    page.fill("#code", prefix + suffix)
    cursor = page.evaluate("s => s.length", prefix)  # UTF-16 offset, as the textarea counts
    page.evaluate("c => { const t = document.getElementById('code'); t.focus(); t.setSelectionRange(c, c); }", cursor)
    page.click("#complete")
    expect(page.locator("#complete")).to_be_enabled()
    expect(page.locator("#code-info")).to_contain_text("inserted")
    value = page.input_value("#code")
    assert value.startswith(prefix) and value.endswith(suffix) and len(value) > len(prefix + suffix)
    middle = value[len(prefix):len(value) - len(suffix)]
    selected = page.evaluate("() => { const t = document.getElementById('code');"
                             " return [t.selectionStart, t.value.slice(t.selectionStart, t.selectionEnd)]; }")
    assert selected == [cursor, middle]
    infill = [r for r in posts if r.url.endswith("/infill")]
    assert json.loads(infill[0].post_data) == {"input_prefix": prefix, "input_suffix": suffix, "input_extra": [],
                                               "n_indent": 4, "n_predict": 24, "temperature": 0, "stream": True}
    # The streamed pieces add up to the server's one-shot answer (greedy, so the same).
    assert middle == _post(server + "/infill", {"input_prefix": prefix, "input_suffix": suffix, "n_indent": 4, "n_predict": 24,
                                                "temperature": 0, "stream": False})["content"]

    # Escape undoes it; Ctrl+Space completes again, Tab keeps it with the cursor after it.
    page.focus("#code")
    page.keyboard.press("Escape")
    assert page.input_value("#code") == prefix + suffix
    assert page.evaluate("() => document.getElementById('code').selectionStart") == cursor
    page.keyboard.press("Control+Space")
    expect(page.locator("#code")).to_have_value(prefix + middle + suffix)
    expect(page.locator("#complete")).to_be_enabled()
    page.keyboard.press("Tab")
    assert page.input_value("#code") == prefix + middle + suffix
    assert page.evaluate("() => { const t = document.getElementById('code'); return [t.selectionStart, t.selectionEnd]; }") \
        == [cursor + len(middle)] * 2

    shot = page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and (tmp_path / "playground.png").stat().st_size > 1000
    if os.environ.get("DSCODER_SCREENSHOT"):
        (ROOT / "benchmarks").mkdir(exist_ok=True)
        (ROOT / "benchmarks" / "playground.png").write_bytes(shot)

    # Model output is text, never HTML (a made-up answer, through the same streaming code);
    # an API error is shown and the question goes back into the input.
    page.click("#chat-clear")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    evil = '<img src=x onerror="window.__pwned = 1">\n```html\n<b>bold</b>\n```\ndone'
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=200, content_type="text/event-stream",
        body="".join(f"data: {json.dumps({'choices': [{'delta': {'content': evil[i:i + 7]}}]})}\n\n"
                     for i in range(0, len(evil), 7)) + "data: [DONE]\n\n"))
    page.fill("#chat-input", "show me html")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-log .msg.assistant pre")).to_have_text("<b>bold</b>")
    expect(page.locator("#chat-send")).to_be_enabled()
    assert page.locator("#chat-log img, #chat-log b").count() == 0
    assert page.locator("#chat-log .msg.assistant").text_content().startswith('<img src=x onerror="window.__pwned = 1">')
    assert page.evaluate("window.__pwned") is None
    page.unroute("**/v1/chat/completions")
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": {"message": "too long", "type": "invalid_request_error", "param": None, "code": None}})))
    page.fill("#chat-input", "a question")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-log .msg.error")).to_have_text("HTTP 400: too long")
    expect(page.locator("#chat-input")).to_have_value("a question")
    expect(page.locator("#chat-log .msg.user")).to_have_count(1)  # the failed question left the log
    page.unroute("**/v1/chat/completions")
    page.route("**/v1/chat/completions", lambda route: route.fulfill(  # an error after a first piece
        status=200, content_type="text/event-stream",
        body='data: {"choices": [{"delta": {"content": "partial"}}]}\n\n'
             'data: {"error": {"message": "generation failed: boom", "type": "server_error"}}\n\n'))
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-log .msg.assistant").nth(1)).to_have_text("partial (generation failed: boom)")
    expect(page.locator("#chat-send")).to_be_enabled()

    # A refused infill leaves the code as it was and says why.
    page.route("**/infill", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": {"message": "n_predict: too large", "type": "invalid_request_error",
                                   "param": "n_predict", "code": None}})))
    before = page.input_value("#code")
    page.click("#complete")
    expect(page.locator("#code-info")).to_have_text("error: HTTP 400: n_predict: too large")
    expect(page.locator("#complete")).to_be_enabled()
    assert page.input_value("#code") == before

    # A model without FIM tokens (the embedded SmolLM2) continues the text before the cursor
    # through /v1/completions instead, and says so.
    page.unroute("**/infill")
    page.route("**/infill", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": {"message": "no FIM tokens", "type": "invalid_request_error",
                                   "param": "input_prefix", "code": "fim_unsupported"}})))
    cursor = page.evaluate("() => document.getElementById('code').selectionStart")
    with page.expect_request("**/v1/completions") as fallback:
        page.click("#complete")
    sent = json.loads(fallback.value.post_data)
    assert sent["prompt"] == before[:cursor] and sent["stream"] is True and sent["stop"] == ["\n\n"]
    expect(page.locator("#code-info")).to_contain_text("this model has no FIM tokens")
    after = page.input_value("#code")
    assert after.startswith(before[:cursor]) and after.endswith(before[cursor:])
    assert page_errors == []
    page.close()
