"""The page at ``/`` in headless Chromium: autocomplete, chips, Recommend, and a cold server.

The browser is the system's ``/usr/bin/chromium`` (``scripts/ensure-system-packages
chromium:chromium``), driven by Playwright, which never downloads one. Without it the tests
skip on a developer machine and fail under CI, where a skipped browser test would hide a
broken page. The server is the real application on loopback over the bundled sample, mined
by the real ``python -m mining``; only the actor behind it is a test double (``Gate``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession
from playwright.async_api import (
    Browser,
    Page,
    Request,
    ViewportSize,
    async_playwright,
    expect,
)

from http_api.settings import Settings
from mining.checkpoint import CHECKPOINT_FILENAME, read_checkpoint
from mining.rulesfile import RULES_FILENAME, RuleSet, read_rules
from mining.version import __version__
from recommender.engine import Recommender
from recommender.snapshot import Snapshot
from tests.helpers.gate import Gate, serve
from tests.helpers.processes import REPO, mine

ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that talks to Google's servers behind the test's back.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A request made before rules exist is held this long before its 503 (short: tests wait on it).
SETTINGS = Settings(rules_wait_seconds=0.2)


class Mined:
    """The bundled sample mined by ``python -m mining``: the rules and their snapshot."""

    def __init__(self, data_dir: Path) -> None:
        self.ruleset: RuleSet = read_rules(data_dir / RULES_FILENAME)
        self.snapshot = Snapshot(
            checkpoint=read_checkpoint(data_dir / CHECKPOINT_FILENAME),
            header=self.ruleset.header,
            recommender=Recommender.from_ruleset(self.ruleset),
        )


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> Mined:
    """Mine the bundled sample with the real job, once for these tests, at (0.025, 0.7, 8): the
    pages under test need rules of two-song antecedents and songs in no rule, which the default
    parameters (pairs seen in one playlist or more) do not give."""
    data_dir = tmp_path_factory.mktemp("ml-data")
    mine(data_dir, MIN_SUPPORT="0.025", MIN_CONFIDENCE="0.7", MAX_LEN="8")
    return Mined(data_dir)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium's path; skip without it, unless under CI."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run scripts/ensure-system-packages chromium:chromium"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """A fresh headless Chromium for one test."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


pytestmark = pytest.mark.slow

SUGGESTIONS_SHOWN = 10
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 360, "height": 740}


@dataclass
class Watched:
    """A page plus what it did that a test may want to refuse."""

    page: Page
    base_url: str
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    song_queries: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        """Record requests to other origins and the autocomplete queries sent."""
        url = request.url
        if url.startswith("data:"):
            return
        if not url.startswith(self.base_url + "/"):
            self.foreign_requests.append(url)
        parts = urlsplit(url)
        if parts.path == "/api/songs":
            self.song_queries.extend(parse_qs(parts.query).get("q", []))


async def open_page(browser: Browser, base_url: str, viewport: ViewportSize) -> Watched:
    """Open ``/`` in a fresh context, watching errors and requests."""
    context = await browser.new_context(viewport=viewport)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    watched = Watched(page, base_url)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("request", watched.on_request)
    await page.goto(base_url + "/")
    return watched


def two_song_rule(ruleset: RuleSet) -> tuple[str, str, str]:
    """The two antecedent songs and the consequent of the mined rule with two antecedents
    that holds in the most playlists (so Recommend must show a rule-based song)."""
    rules = [r for r in ruleset.iter_rules() if len(r[0]) == 2]
    assert rules, "the bundled sample should give rules with two-song antecedents"
    (first, second), consequent, _, _ = max(rules, key=lambda r: (r[2], r[0], r[1]))
    return first, second, consequent


def typed_prefix(recommender: Recommender, song: str, chosen: list[str]) -> str:
    """The shortest lower-case prefix (3 characters or more) that suggests ``song``."""
    taken = set(chosen)
    for length in range(3, len(song) + 1):
        prefix = song[:length].lower()
        if not prefix.strip():
            continue
        shown = [s for s in recommender.search(prefix, 50) if s not in taken]
        if song in shown[:SUGGESTIONS_SHOWN]:
            return prefix
    raise AssertionError(f"no prefix of {song!r} suggests it")


def busy_prefix(recommender: Recommender, length: int) -> str:
    """A lower-case song-name prefix of ``length`` characters that suggests three songs or more."""
    for song in recommender.song_names:
        prefix = song[:length].lower()
        if len(prefix) == length and len(recommender.search(prefix, 3)) == 3:
            return prefix
    raise AssertionError(f"no {length}-character prefix suggests three songs")


async def type_into_search(page: Page, text: str) -> None:
    """Type like a person (one key at a time), so the autocomplete's debounce is exercised."""
    box = page.get_by_role("combobox", name="Add a song you like")
    await box.click()
    await box.press_sequentially(text, delay=20)


async def pick_with_mouse(page: Page, prefix: str, song: str) -> None:
    """Type a prefix and click the suggestion ``song``."""
    await type_into_search(page, prefix)
    await page.get_by_role("option", name=song, exact=True).click()


async def pick_with_keyboard(page: Page, prefix: str, song: str) -> None:
    """Type a prefix, walk down the suggestions with the arrow key to ``song``, press Enter."""
    await type_into_search(page, prefix)
    await expect(page.get_by_role("option", name=song, exact=True)).to_be_visible()
    shown = await page.get_by_role("option").all_inner_texts()
    box = page.get_by_role("combobox")
    for _ in range(shown.index(song) + 1):
        await box.press("ArrowDown")
    active = await box.get_attribute("aria-activedescendant")
    assert active is not None
    await expect(page.locator(f"#{active}")).to_have_text(song)
    await expect(page.locator(f"#{active}")).to_have_attribute("aria-selected", "true")
    await box.press("Enter")


async def api_recommendations(base_url: str, songs: list[str]) -> dict[str, Any]:
    """What ``POST /api/recommend`` answers for ``songs``."""
    async with (
        ClientSession() as session,
        session.post(base_url + "/api/recommend", json={"songs": songs}) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return body


async def expect_results(page: Page, answer: dict[str, Any]) -> None:
    """The page lists the answer's songs and marks those after ``from_rules`` as popular."""
    songs, from_rules = answer["songs"], answer["from_rules"]
    await expect(page.locator("#results .song")).to_have_text(songs)
    await expect(page.locator("#results li.filled .song")).to_have_text(songs[from_rules:])
    await expect(page.locator("#results .origin")).to_have_text(
        ["popular"] * (len(songs) - from_rules)
    )


async def chip_names(page: Page) -> list[str]:
    """The names on the chosen-song chips, in order."""
    return await page.locator("#chosen .chip span").all_inner_texts()


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "desktop"), (NARROW, "narrow-360px")])
async def test_pick_two_songs_and_get_the_apis_recommendations(
    browser: Browser, mined: Mined, artifacts: Path, viewport: ViewportSize, name: str
) -> None:
    first, second, consequent = two_song_rule(mined.ruleset)
    recommender = mined.snapshot.recommender
    async with serve(Gate(mined.snapshot), SETTINGS) as base_url:
        watched = await open_page(browser, base_url, viewport)
        page = watched.page
        await expect(page.locator("#server-version")).to_have_text(__version__)
        await expect(page.locator("#model-date")).to_have_text(mined.snapshot.model_date)

        await pick_with_mouse(page, typed_prefix(recommender, first, []), first)
        await pick_with_keyboard(page, typed_prefix(recommender, second, [first]), second)
        assert await chip_names(page) == [first, second]

        await page.get_by_role("button", name="Recommend").click()
        answer = await api_recommendations(base_url, [first, second])
        assert consequent in answer["songs"][: answer["from_rules"]]
        await expect_results(page, answer)
        await expect(page.get_by_role("status")).to_have_text(
            f"{len(answer['songs'])} recommendations shown."
        )

        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {viewport}"
        await page.screenshot(path=str(artifacts / f"recommend-{name}.png"), full_page=True)
        assert watched.page_errors == []
        assert watched.console_errors == []
        assert watched.foreign_requests == []


@pytest.mark.slow
async def test_keyboard_use_chips_and_debounced_requests(
    browser: Browser, mined: Mined, artifacts: Path
) -> None:
    first, second, _ = two_song_rule(mined.ruleset)
    recommender = mined.snapshot.recommender
    async with serve(Gate(mined.snapshot), SETTINGS) as base_url:
        watched = await open_page(browser, base_url, DESKTOP)
        page = watched.page
        box = page.get_by_role("combobox", name="Add a song you like")
        status = page.get_by_role("status")

        await box.focus()
        await box.press("Enter")
        await expect(status).to_have_text("Add at least one song first.")

        # Eight keys typed faster than the debounce make one or two requests, not eight.
        query = busy_prefix(recommender, 8)
        await type_into_search(page, query)
        await expect(page.get_by_role("listbox")).to_be_visible()
        assert watched.song_queries.count(query) == 1
        assert len(watched.song_queries) <= 2, watched.song_queries
        await expect(box).to_have_attribute("aria-expanded", "true")

        # ArrowUp from nothing wraps to the last option; ArrowDown wraps back to the first.
        options = page.get_by_role("option")
        count = await options.count()
        assert count >= 3
        await box.press("ArrowUp")
        await expect(box).to_have_attribute("aria-activedescendant", f"song-option-{count - 1}")
        await box.press("ArrowDown")
        await expect(box).to_have_attribute("aria-activedescendant", "song-option-0")
        await page.screenshot(path=str(artifacts / "autocomplete.png"))
        await box.press("Escape")
        await expect(box).to_have_attribute("aria-expanded", "false")
        await expect(page.get_by_role("listbox")).to_be_hidden()
        await box.press("Escape")
        await expect(box).to_have_value("")

        await pick_with_keyboard(page, typed_prefix(recommender, first, []), first)
        await pick_with_keyboard(page, typed_prefix(recommender, second, [first]), second)
        assert await chip_names(page) == [first, second]

        # Tab from the box reaches the first chip's remove button, with a visible focus ring.
        await box.press("Tab")
        remove_first = page.get_by_role("button", name=f"Remove {first}")
        await expect(remove_first).to_be_focused()
        outline = await remove_first.evaluate(
            "b => [getComputedStyle(b).outlineStyle, getComputedStyle(b).outlineWidth]"
        )
        assert outline == ["solid", "3px"]
        await page.screenshot(path=str(artifacts / "keyboard-focus.png"))
        await page.keyboard.press("Enter")
        assert await chip_names(page) == [second]
        await expect(box).to_be_focused()
        await expect(status).to_have_text(f"Removed {first}.")

        await box.press("Backspace")
        assert await chip_names(page) == []
        await expect(page.locator("#chosen-empty")).to_be_visible()
        assert watched.page_errors == []
        assert watched.foreign_requests == []


@pytest.mark.slow
async def test_a_cold_server_is_announced_and_the_page_recovers(
    browser: Browser, mined: Mined, artifacts: Path
) -> None:
    first, second, _ = two_song_rule(mined.ruleset)
    recommender = mined.snapshot.recommender
    not_ready = re.compile(r"not ready yet.*Trying again in \d+ s\.")
    cold = Gate()
    async with serve(cold, SETTINGS) as base_url:
        watched = await open_page(browser, base_url, NARROW)
        page = watched.page
        status = page.get_by_role("status")
        await expect(status).to_have_text(not_ready)
        await expect(page.locator("#server-version")).to_have_text("unknown")
        await page.screenshot(path=str(artifacts / "not-ready-360px.png"), full_page=True)

        cold.publish(mined.snapshot)
        await expect(page.locator("#server-version")).to_have_text(__version__)
        await expect(status).to_have_text("The server is ready.")
        await pick_with_mouse(page, typed_prefix(recommender, first, []), first)
        await pick_with_keyboard(page, typed_prefix(recommender, second, [first]), second)
        port = urlsplit(base_url).port

    # The same address comes back as a fresh server without rules (a restart): Recommend
    # first gets 503s, says so, and succeeds on its own once the rules are loaded.
    restarted = Gate()
    async with serve(restarted, SETTINGS, port=port or 0) as base_url:
        await page.get_by_role("button", name="Recommend").click()
        await expect(status).to_have_text(not_ready)
        restarted.publish(mined.snapshot)
        answer = await api_recommendations(base_url, [first, second])
        await expect_results(page, answer)
        await expect(status).to_have_text(f"{len(answer['songs'])} recommendations shown.")
        await page.screenshot(path=str(artifacts / "recovered-360px.png"), full_page=True)
        assert watched.page_errors == []
        assert watched.foreign_requests == []


def song_without_rules(ruleset: RuleSet) -> str:
    """The most popular song that is in no rule's antecedent: asking for it fires no rule."""
    in_antecedents = {song for antecedent, *_ in ruleset.iter_rules() for song in antecedent}
    counts = dict(zip(ruleset.song_names, ruleset.song_counts.tolist(), strict=True))
    return max(set(ruleset.song_names) - in_antecedents, key=lambda song: (counts[song], song))


def without_song(mined: Mined, song: str) -> Snapshot:
    """The snapshot of a model reloaded without ``song`` (renamed), as if mined again."""
    names = tuple(f"{name} (gone)" if name == song else name for name in mined.ruleset.song_names)
    ruleset = dataclasses.replace(mined.ruleset, song_names=names)
    return dataclasses.replace(mined.snapshot, recommender=Recommender.from_ruleset(ruleset))


@pytest.mark.slow
async def test_popular_fill_and_unknown_songs_are_marked(
    browser: Browser, mined: Mined, artifacts: Path
) -> None:
    lonely = song_without_rules(mined.ruleset)
    # The antecedent of the one-song rule that holds in the most playlists.
    (first,), *_ = max(
        (r for r in mined.ruleset.iter_rules() if len(r[0]) == 1), key=lambda r: (r[2], r[0])
    )
    recommender = mined.snapshot.recommender
    gate = Gate(mined.snapshot)
    async with serve(gate, SETTINGS) as base_url:
        watched = await open_page(browser, base_url, NARROW)
        page = watched.page
        note = page.locator("#results-note")
        recommend = page.get_by_role("button", name="Recommend")
        await pick_with_mouse(page, typed_prefix(recommender, lonely, []), lonely)
        await recommend.click()
        answer = await api_recommendations(base_url, [lonely])
        assert answer["from_rules"] == 0
        await expect_results(page, answer)
        await expect(note).to_have_text(
            "No rule matched these songs, so these are simply the most popular songs."
        )
        await page.screenshot(path=str(artifacts / "all-popular-360px.png"), full_page=True)

        # A song with rules: the note and the marks follow how many the rules gave.
        await pick_with_keyboard(page, typed_prefix(recommender, first, [lonely]), first)
        await recommend.click()
        answer = await api_recommendations(base_url, [lonely, first])
        assert answer["from_rules"] > 0
        await expect_results(page, answer)
        if answer["from_rules"] < len(answer["songs"]):
            await expect(note).to_contain_text(f"The rules gave {answer['from_rules']} song")
        else:
            await expect(note).to_be_hidden()

        # The model is reloaded without a chosen song: the page says it was ignored.
        gate.publish(without_song(mined, lonely))
        await recommend.click()
        answer = await api_recommendations(base_url, [lonely, first])
        assert answer["unknown"] == [lonely]
        await expect_results(page, answer)
        await expect(note).to_contain_text(f"Not in the model, so ignored: {lonely}.")
        await page.screenshot(path=str(artifacts / "unknown-360px.png"), full_page=True)
        assert watched.page_errors == []
        assert watched.console_errors == []
        assert watched.foreign_requests == []
