"""Background work steps aside while a review request is in flight (labeler.background.Foreground).

Real threads throughout: a "request" is a thread inside `serving()`, and each check waits on the
gate's own condition (`wait_until`) for the state it expects instead of sleeping and hoping.
Then the real app: its review endpoints enter the gate, and its real heatmap worker (model load,
Grad-CAM on a real sample image) does not start a product while a request is in flight.
"""
from __future__ import annotations

import threading
import time

from gradio_client import Client

from app_server import running_app
from app_workspace import app_workspace
from labeler.background import Foreground

WAIT_S = 60.0


def hold_request(busy: Foreground) -> tuple[threading.Thread, threading.Event]:
    """A request thread inside `serving()` until the returned event is set."""
    release, entered = threading.Event(), threading.Event()

    def request() -> None:
        with busy.serving():
            entered.set()
            release.wait(WAIT_S)
    thread = threading.Thread(target=request, name="request")
    thread.start()
    assert entered.wait(WAIT_S)
    return thread, release


def test_a_background_step_waits_for_the_request_in_flight_then_runs():
    busy = Foreground(max_wait_s=WAIT_S)
    assert busy.yield_to_requests() == 0.0            # nobody in flight: no wait at all
    ran: list[tuple[str, int]] = []
    step = busy.gated(lambda name: ran.append((name, busy.in_flight)))
    request, release = hold_request(busy)
    worker = threading.Thread(target=step, args=("heatmaps",), name="background")
    worker.start()
    assert busy.wait_until(lambda b: b.waiting == 1, WAIT_S)     # the worker is parked at the gate...
    assert ran == [] and worker.is_alive()                        # ...and has not run its step
    release.set()
    request.join(WAIT_S)
    worker.join(WAIT_S)
    assert ran == [("heatmaps", 0)]                   # it ran once the request had left
    assert busy.in_flight == 0 and busy.waiting == 0 and busy.served == 1


def test_requests_without_a_pause_still_leave_background_work_a_turn():
    """Reviewers who never pause do not starve the warm-up: a step waits at most max_wait_s."""
    busy = Foreground(max_wait_s=0.2)
    request, release = hold_request(busy)
    try:
        started = time.monotonic()
        waited = busy.yield_to_requests()
        assert busy.in_flight == 1                      # the request is still there...
        assert 0.15 <= waited and time.monotonic() - started < WAIT_S   # ...and the step went on
    finally:
        release.set()
        request.join(WAIT_S)


def test_the_apps_review_requests_hold_back_its_heatmap_worker(sample_dir, tmp_path):
    root = app_workspace(sample_dir, tmp_path / "ws")
    with running_app(root, tmp_path) as (demo, url):
        ui = demo.review_ui
        busy = ui.busy
        # the review endpoints run inside the gate (Gradio still injects the request: /set_reviewer)
        client = Client(url, verbose=False)
        before = busy.served
        current = client.predict("alice", api_name="/set_reviewer")[0]
        client.predict(current, "", api_name="/accept")
        assert busy.served - before == 2 and busy.in_flight == 0

        # a product with an image, its heatmaps asked for while a (long) request is in flight
        version = ui.ws.live_version()
        pid = ui.ws.scalar("SELECT p.id FROM products p JOIN predictions r ON r.product_id = p.id "
                           "AND r.model_version = ? WHERE p.image_path IS NOT NULL ORDER BY p.id LIMIT 1", (version,))
        product = ui.ws.product(pid)
        second = int(ui.ws.prediction(pid, version)["top5"][1][0])    # never computed ahead (top-1 only)
        request, release = hold_request(busy)
        try:
            fut = ui.prefetch.request(product, version, second)
            assert busy.wait_until(lambda b: b.waiting >= 1, 300)    # the worker parked at the gate
            assert not fut.done()
        finally:
            release.set()
            request.join(WAIT_S)
        heat = fut.result(timeout=300)                  # computed once the request had left
        assert len(heat.items) == 3 and heat.category == second, heat.note
