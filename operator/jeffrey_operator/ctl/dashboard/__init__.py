"""``jeffreyctl dashboard``: the ladders in a browser, live (``docs/dashboard.md``).

* :mod:`.model` — pure: what the page shows of an integration, built on :mod:`..view`;
* :mod:`.hub` — the one watch of the API (a thread) and the fan-out to every tab;
* :mod:`.sparklines` — recent gate values from Prometheus ``query_range``;
* :mod:`.server` — the aiohttp app (page, assets, event stream, actions) and how it runs;
* ``static/`` — the page, its script and style: package data, nothing from another origin.
"""
