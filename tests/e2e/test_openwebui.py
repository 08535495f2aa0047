"""Memory as a person meets it in Open WebUI: Alice tells a fact in one chat, opens a new chat and asks about it; the
prompt vLLM receives for that question carries the fact (the wiretap), Bob's does not. Open WebUI's own side requests
(title, tags, follow-ups) and its large ``tools`` array go through the proxy too: all answered, none remembered.

Screenshots of every step go to ``$MEMPROXY_TEST_ARTIFACTS`` (default ``test-artifacts/``, git-ignored) under
``e2e/``; a failing step leaves one named ``…-failed``. The model's answer itself is not asserted (SmolLM2-135M's
wording varies); it is printed for the closing note.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ARTIFACTS, OPENWEBUI_KEY
from tests.support.openwebui import Account
from tests.support.wiretap import Captured, Wiretap

pytestmark = pytest.mark.e2e

FACT = "My dog is called Pochi and I live in Sapporo."
QUESTION = "What is my dog called?"
SIDE_MARKER = "### Task:"


# --- the page ----------------------------------------------------------------------------------------------------


class ChatPage:
    """One person's Open WebUI tab, signed in through the login form."""

    def __init__(self, browser: Any, base_url: str, account: Account) -> None:
        self.name = account.name.lower()
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.steps = 0
        self.script_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        self.page.set_default_timeout(60_000)
        self.sign_in(account)

    def shoot(self, step: str) -> None:
        self.steps += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.name}-{self.steps:02d}-{step}")
        self.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        """Runs one step of the story; a screenshot after it, or one named ``…-failed`` if it raised."""
        try:
            result = action()
        except Exception:
            self.shoot(f"{name}-failed")
            raise
        self.shoot(name)
        return result

    def sign_in(self, account: Account) -> None:
        def fill_form() -> None:
            self.page.goto("/auth")
            self.page.locator("input#email").fill(account.email)
            self.page.locator("input[name='password'], input[type='password']").first.fill(account.password)
            self.page.locator("button[type='submit']").first.click()
            self.page.locator("#chat-input").wait_for(state="visible")

        self.step("signed-in", fill_form)

    def new_chat(self) -> None:
        def open_new() -> None:
            # The sidebar's own link sits in an inert panel while the sidebar is collapsed; the collapsed bar has
            # another one with the same label. Click whichever a person could click.
            links = self.page.locator("a[aria-label='New Chat']")
            for index in range(links.count()):
                link = links.nth(index)
                if link.is_visible() and not link.evaluate("el => Boolean(el.closest('[inert]'))"):
                    link.click()
                    break
            else:
                raise AssertionError("no clickable New Chat link")
            self.page.locator("#chat-input").wait_for(state="visible")
            self.page.wait_for_function("() => !/\\/c\\//.test(location.pathname)")

        self.step("new-chat", open_new)

    def send(self, text: str) -> None:
        def type_and_send() -> None:
            box = self.page.locator("#chat-input")
            box.click()
            box.fill(text)
            self.page.keyboard.press("Enter")
            self.page.get_by_text(text).first.wait_for(state="visible")

        self.step("sent", type_and_send)

    def wait_until_answered(self, timeout_s: float = 240) -> None:
        """Until the answer has streamed in (the stop button is gone) and the chat has an URL of its own."""

        def wait() -> None:
            self.page.wait_for_url(re.compile(r".*/c/.+"), timeout=timeout_s * 1000)
            self.page.locator("button[aria-label='Stop']").wait_for(state="detached", timeout=timeout_s * 1000)

        self.step("answered", wait)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_chat(browser: Any, openwebui: str) -> Iterator[Callable[[Account], ChatPage]]:
    """``open_chat(account)``: a signed-in tab of its own; each gets a last screenshot and must have raised no
    script error."""
    pages: list[ChatPage] = []

    def opened(account: Account) -> ChatPage:
        pages.append(ChatPage(browser, openwebui, account))
        return pages[-1]

    yield opened
    for chat in pages:
        chat.shoot("end")
        chat.close()
    assert [error for chat in pages for error in chat.script_errors] == []


# --- what vLLM and the proxy saw -----------------------------------------------------------------------------------


def last_user_text(captured: Captured) -> str:
    users = [m for m in captured.json().get("messages", []) if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def is_side_request(captured: Captured) -> bool:
    return last_user_text(captured).lstrip().startswith(SIDE_MARKER)


def chat_request_for(wiretap: Wiretap, text: str, since: int, timeout_s: float = 240) -> Captured:
    """The first chat request after index ``since`` that carries ``text`` as its user's own message (not a side
    request quoting it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for captured in wiretap.chat_requests()[since:]:
            if not is_side_request(captured) and text in last_user_text(captured):
                return captured
        time.sleep(0.5)
    raise AssertionError(f"vLLM never received a chat request for {text!r}")


def memories(proxy: str, user: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{proxy}/v1/memories", params={"user": user, "limit": 100},
                         headers={"authorization": f"Bearer {OPENWEBUI_KEY}"}, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_for_memory(proxy: str, user: str, word: str, timeout_s: float = 180) -> list[dict[str, Any]]:
    """The exchange is written in the background after the answer: wait until a memory of ``user`` has ``word``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = memories(proxy, user)
        if any(word in m["text"] for m in found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def chat_statuses(proxy: str) -> dict[str, float]:
    """``memproxy_http_requests`` of /v1/chat/completions by status, and ``memproxy_chat_memory`` by status."""
    text = httpx.get(f"{proxy}/metrics", timeout=30, trust_env=False).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        requests = re.match(r'memproxy_http_requests_total\{(.*)\} (\S+)$', line)
        if requests and 'route="/v1/chat/completions"' in requests.group(1):
            status = re.search(r'status="(\d+)"', requests.group(1))
            counts[f"http_{status.group(1) if status else '?'}"] = float(requests.group(2))
        memory = re.match(r'memproxy_chat_memory_total\{status="(\w+)"\} (\S+)$', line)
        if memory:
            counts[f"memory_{memory.group(1)}"] = float(memory.group(2))
    return counts


# --- the story -----------------------------------------------------------------------------------------------------


def test_a_fact_told_in_one_chat_reaches_the_next_chat_for_that_user_only(
    open_chat: Callable[[Account], ChatPage], accounts: dict[str, Account], wiretap: Wiretap, proxy: str,
) -> None:
    alice, bob = accounts["alice"], accounts["bob"]

    chat = open_chat(alice)
    since = len(wiretap.chat_requests())
    chat.send(FACT)
    told = chat_request_for(wiretap, FACT, since)
    chat.wait_until_answered()
    # Open WebUI offers its built-in tools with every chat (native function calling): a ~20 KB `tools` array that
    # must pass through the proxy to vLLM and be answered like any other chat.
    tools = told.json().get("tools") or []
    print(f"\n[e2e] Open WebUI's chat request: {len(told.body)} bytes, tools: {len(tools)} "
          f"({len(json.dumps(tools))} bytes)")
    assert tools, "Open WebUI sent no tools: the tier no longer covers them"
    remembered = wait_for_memory(proxy, alice.id, "Pochi")
    assert any("Pochi" in m["text"] for m in remembered), f"Alice's fact was not remembered: {remembered}"

    chat.new_chat()
    since = len(wiretap.chat_requests())
    chat.send(QUESTION)
    asked = chat_request_for(wiretap, QUESTION, since)
    chat.wait_until_answered()
    prompt = json.dumps(asked.json()["messages"], ensure_ascii=False)
    assert "<memproxy-recalled-memories>" in prompt and "Pochi" in prompt, prompt[:3000]
    roles = [m.get("role") for m in asked.json()["messages"]]
    assert roles.count("user") == 1 and "assistant" not in roles, f"the new chat carried an old history: {roles}"
    answer = chat.page.locator("#chat-container, main").first.inner_text()
    print(f"[e2e] Alice's new chat, answer on screen uses Pochi: {'Pochi' in answer}")

    bobs = open_chat(bob)
    since = len(wiretap.chat_requests())
    bobs.send(QUESTION)
    asked = chat_request_for(wiretap, QUESTION, since)
    bobs.wait_until_answered()
    assert "Pochi" not in json.dumps(asked.json()["messages"]) and "Sapporo" not in json.dumps(asked.json()["messages"])
    assert not [m for m in memories(proxy, bob.id) if "Pochi" in m["text"]]

    # Open WebUI's side requests reached vLLM, were answered (every chat request got a 200), were recognised as
    # side requests, and none of them became a memory.
    side = [c for c in wiretap.chat_requests() if is_side_request(c)]
    assert side, "Open WebUI sent no title / tags / follow-up request"
    statuses = chat_statuses(proxy)
    print(f"[e2e] side requests: {len(side)}; proxy chat statuses: {statuses}")
    assert statuses.get("memory_skipped", 0) >= len(side)
    assert [status for status in statuses if status.startswith("http_") and status != "http_200"] == []
    for user in (alice, bob):
        texts = [m["text"] for m in memories(proxy, user.id)]
        assert not [t for t in texts if SIDE_MARKER in t or "<chat_history>" in t], texts
