"""Where the browser's time goes on Enter -> next card: a Chrome CPU profile of the review page.

bench_app says how long a decision takes in the browser; this says what the renderer does in that
time. It opens the app (the app tests' workspace), makes --warm decisions, then records a V8 CPU
profile (Chrome DevTools Protocol `Profiler`) over --decisions more, and prints the functions with
the most self time per decision, each with the caller chain outside Svelte's snapshot helpers.
"(program)" is the renderer's native work (style, layout, paint); "(idle)" is waiting (the
server, the glance between presses).

    python -m bench.profile_review                  # 30 decisions, 300 ms apart
    python -m bench.profile_review --out prof.json  # also keep the raw profile (DevTools loads it)

Found with it (issue 15): Gradio's `update_state -> get_data` snapshots every declared output of
the event (`$state.snapshot`, `structuredClone`) each time its loading status changes, even with
show_progress="hidden": the cost grows with the number of outputs, not with what they carry.
"""
from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

from bench.bench_app import PRESS, open_review
from bench.common import parse, parser, pct, table
from labeler.local_app import launch_chromium, running_app
from labeler.templates import app_template, copy_template

NATIVE = ("(idle)", "(program)", "(garbage collector)")


def frame_name(node: dict) -> str:
    cf = node["callFrame"]
    return f"{cf['functionName'] or '(anonymous)'} {cf['url'].rsplit('/', 1)[-1]}:{cf['lineNumber']}".strip()


def self_times(profile: dict) -> tuple[collections.Counter, dict[int, int], dict[int, dict]]:
    """Microseconds of self time per profile node, the node's parent, the nodes by id."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
    spent: collections.Counter = collections.Counter()
    for sample, delta in zip(profile["samples"], profile["timeDeltas"]):
        spent[sample] += delta
    return spent, parent, nodes


def by_function(profile: dict, depth: int = 3) -> list[tuple[str, str, float]]:
    """(function, first callers, µs) summed over the profile, largest first."""
    spent, parent, nodes = self_times(profile)
    out: collections.Counter = collections.Counter()
    for node_id, us in spent.items():
        name = frame_name(nodes[node_id])
        chain, at = [], node_id
        while at in parent and len(chain) < depth:
            at = parent[at]
            caller = frame_name(nodes[at])
            if caller.split(" ")[0] != name.split(" ")[0] and caller != "(root)":
                chain.append(caller)
        out[(name, " <- ".join(chain))] += us
    return [(name, chain, us) for (name, chain), us in out.most_common()]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--decisions", type=int, default=30, help="decisions profiled")
    ap.add_argument("--warm", type=int, default=10, help="decisions before the profile starts")
    ap.add_argument("--glance-ms", type=int, default=300, help="pause between decisions")
    ap.add_argument("--top", type=int, default=15, help="functions printed")
    ap.add_argument("--out", type=Path, help="write the raw profile here (.json, loads in DevTools)")
    args = parse(ap, quick={"decisions": 8, "warm": 2})
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory(prefix="profile-review-") as tmp:
        root = copy_template(app_template(), Path(tmp) / "ws")
        with running_app(root, Path(tmp) / "gradio") as (_, url), sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_review(page, url, "profile")
            for _ in range(args.warm):
                page.evaluate(PRESS)
                page.wait_for_timeout(args.glance_ms)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 200})
            cdp.send("Profiler.start")
            times = []
            for _ in range(args.decisions):
                times.append(float(page.evaluate(PRESS)[0]))
                page.wait_for_timeout(args.glance_ms)
            profile = cdp.send("Profiler.stop")["profile"]
            browser.close()
    n = len(times)
    print(f"Enter -> next card over the profiled decisions: p50 {pct(times, 50):.1f} ms, "
          f"p95 {pct(times, 95):.1f} ms (n={n}; the profiler itself adds a little)")
    rows = by_function(profile)
    busy = sum(us for name, _, us in rows if name.split(" ")[0] not in ("(idle)",))
    table(f"Renderer main thread per decision ({busy / n / 1000:.1f} ms busy of each decision + glance)",
          ["function", "ms / decision", "called from"],
          [[name, f"{us / n / 1000:.2f}", chain[:110]] for name, chain, us in rows[:args.top]])
    if args.out:
        args.out.write_text(json.dumps(profile))
        print(f"wrote {args.out.resolve()}")


if __name__ == "__main__":
    main()
