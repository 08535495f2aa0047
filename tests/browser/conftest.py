"""The browser tests' fixtures (tests/browser/harness.py), when Playwright is installed."""

try:
    import playwright.sync_api  # noqa: F401 - only to know whether the harness can load
except ImportError:  # the test modules skip themselves through the harness's importorskip
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.browser.harness import api, browser, page, seed, server  # noqa: F401 - fixtures
