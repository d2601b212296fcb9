"""Warm-up off the request path: a newly live version's models and ranked queue load in
background threads, at start, after this app's retrain or rollback, and when another process
(the CLI) makes a version live. A mixin of `labeler.app.ReviewUI`."""
from __future__ import annotations

import logging
import threading

from labeler import review
from labeler.app_review import DEFAULT_STRATEGY
from labeler.background import lower_priority

log = logging.getLogger("labeler.app")
LIVE_POLL_S = 5.0      # how often the app looks for a version made live by another process


class WarmUp:
    """`warm` and `watch_live` (needs `ws`, `settings`, `prefetch`, `highlights`, `warmed`, `warming`,
    `busy`)."""

    def warm(self, version: str | None) -> threading.Thread:
        """Before the first card of a newly live version: its model and backbones (heatmaps) and
        its ranked default queue (`review.warm`: ~2.6 s at 85k products, 50k decisions) load in
        the background, not on the first reviewer's request (which waits for the build if it
        comes first). Returns the queue's thread."""
        self.warmed = version
        self.prefetch.preload(version)
        self.highlights.preload(version)

        def build() -> None:
            lower_priority()      # the first reviewers' requests come first
            self.busy.yield_to_requests()   # a request in flight builds what it needs itself
            try:
                review.warm(self.ws, DEFAULT_STRATEGY, settings=self.settings)
            except Exception as exc:  # noqa: BLE001 - the first card will report it properly
                log.warning("could not rank the queue ahead: %s", exc)
            finally:
                self.ws.close()     # this thread's connection only
        self.warming = threading.Thread(target=build, name="queue-warm", daemon=True)
        self.warming.start()
        return self.warming

    def watch_live(self, every: float = LIVE_POLL_S) -> threading.Thread:
        """Warm a version made live elsewhere (the CLI's `retrain` or `rollback` while reviewers
        work) as soon as it is seen, not on the next reviewer's request. Ends with the prefetcher."""
        def loop() -> None:
            while not self.prefetch.wait_closed(every):
                try:
                    version = self.ws.live_version()
                except Exception as exc:  # noqa: BLE001 - a busy or moved database: look again later
                    log.warning("could not read the live version: %s", exc)
                    continue
                if version != self.warmed:      # not already warmed by this app's own buttons
                    self.warm(version)
            self.ws.close()         # this thread's connection only
        thread = threading.Thread(target=loop, name="live-watch", daemon=True)
        thread.start()
        return thread
