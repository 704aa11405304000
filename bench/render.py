#!/usr/bin/env python3
"""Renders BENCHMARKS.md and the latency-versus-throughput SVG plots from one results file
(bench/results/<date>.json). Standard library only; the SVG is written by hand."""

import argparse
import json
import math
import os

PEERS = ("roomcast", "node")
COLORS = {"roomcast": "#c0392b", "node": "#2471a3", "single Redis": "#c0392b", "Redis Cluster": "#7d3c98"}


def get(data, *path):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def fmt(value, digits=0):
    if value is None:
        return "—"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def ratio(ours, theirs, digits=2):
    if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)) or theirs == 0:
        return "—"
    return f"{ours / theirs:.{digits}f}×"


def error_of(scenario, peer):
    return get(scenario, peer, "error")


def svg_plot(title, series, path):
    """Log-log plot of p99 (solid) and p50 (dashed) latency over delivered messages/s."""
    width, height, left, right, top, bottom = 640, 400, 70, 20, 40, 50
    points = [p for s in series.values() for p in s if p[0] > 0 and p[1] and p[1] > 0]
    if not points:
        return False
    xs = [p[0] for p in points]
    ys = [v for p in points for v in (p[1], p[2]) if v and v > 0]
    x0, x1 = math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1
    y0, y1 = math.log10(min(ys)) - 0.1, math.log10(max(ys + [100])) + 0.1

    def px(x):
        return left + (math.log10(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return top + (y1 - math.log10(y)) / (y1 - y0) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for exponent in range(math.floor(x0), math.ceil(x1) + 1):
        for mult in (1, 2, 5):
            x = mult * 10**exponent
            if x0 <= math.log10(x) <= x1:
                out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{height - bottom}" stroke="#ddd"/>')
                out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:,.0f}</text>')
    for exponent in range(math.floor(y0), math.ceil(y1) + 1):
        for mult in (1, 2, 5):
            y = mult * 10**exponent
            if y0 <= math.log10(y) <= y1:
                out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{width - right}" y2="{py(y):.1f}" stroke="#ddd"/>')
                label = f"{y:g}"
                out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{label}</text>')
    if y0 <= 2 <= y1:
        out.append(
            f'<line x1="{left}" y1="{py(100):.1f}" x2="{width - right}" y2="{py(100):.1f}" '
            f'stroke="#888" stroke-dasharray="2,3"/><text x="{width - right - 4}" y="{py(100) - 4:.1f}" '
            f'text-anchor="end" fill="#666">p99 limit 100 ms</text>'
        )
    out.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">delivered messages/s (log)</text>')
    out.append(
        f'<text x="16" y="{height / 2}" text-anchor="middle" transform="rotate(-90 16 {height / 2})">'
        "latency ms (log): p99 solid, p50 dashed</text>"
    )
    legend_y = top + 8
    for peer, pts in series.items():
        pts = [p for p in pts if p[0] > 0 and p[1] and p[1] > 0]
        if not pts:
            continue
        color = COLORS.get(peer, "#333")
        p99 = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in pts)
        out.append(f'<polyline points="{p99}" fill="none" stroke="{color}" stroke-width="2"/>')
        p50_pts = [(x, m) for x, _, m in pts if m and m > 0]
        if p50_pts:
            p50 = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in p50_pts)
            out.append(f'<polyline points="{p50}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,4"/>')
        for x, y, _ in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<rect x="{left + 10}" y="{legend_y - 9}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + 28}" y="{legend_y + 1}">{peer}</text>')
        legend_y += 18
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as svg:
        svg.write("\n".join(out) + "\n")
    return True


def step_points(steps):
    return [
        (s.get("delivered_per_sec") or 0, get(s, "latency", "p99_ms"), get(s, "latency", "p50_ms"))
        for s in steps or []
    ]


def ramp_series(scenario):
    return {peer: step_points(get(scenario, peer, "steps")) for peer in PEERS}


def load_results(paths):
    """The first file's run, with the scenarios of every later file laid over it: a single
    scenario run (`./bench/run.sh fanout-cluster`) is shown next to the last full run's figures
    without running everything again. Returns the results and, per later file, its scenarios."""
    with open(paths[0], encoding="utf-8") as results_file:
        results = json.load(results_file)
    merged = []
    for path in paths[1:]:
        with open(path, encoding="utf-8") as results_file:
            extra = json.load(results_file)
        scenarios = extra.get("scenarios", {})
        results.setdefault("scenarios", {}).update(scenarios)
        for key, value in extra.get("settings", {}).items():
            results.setdefault("settings", {}).setdefault(key, value)
        merged.append((path, extra, sorted(scenarios)))
    return results, merged


def cluster_section(scenarios, plots_dir, stamp, md_dir):
    """fan-out on one Redis vs on a Redis Cluster, roomcast only, side by side."""
    single, cluster = get(scenarios, "fanout", "roomcast"), get(scenarios, "fanout-cluster", "roomcast")
    if not cluster:
        return []
    single = single or {}
    lines = [
        "## fan-out: single Redis vs Redis Cluster (roomcast)",
        "",
        "The same fan-out ramp (1 room × 1,000 members, 10 senders, 3 instances) on one Redis and on "
        "a 6-node Redis Cluster (3 masters + 3 replicas, sharded Pub/Sub) on the same machine.",
        "",
        "| metric | single Redis | Redis Cluster | cluster / single |",
        "|---|---|---|---|",
    ]
    ours, theirs = cluster.get("max_sustained_delivered_per_sec"), single.get("max_sustained_delivered_per_sec")
    lines.append(f"| max sustained delivered msg/s (p99 ≤ 100 ms, ≥ 99.9 %) | {fmt(theirs)} | {fmt(ours)} | {ratio(ours, theirs)} |")
    lines.append(
        f"| p50 / p99 ms at that rate | {fmt(single.get('at_max_p50_ms'), 1)} / {fmt(single.get('at_max_p99_ms'), 1)} | "
        f"{fmt(cluster.get('at_max_p50_ms'), 1)} / {fmt(cluster.get('at_max_p99_ms'), 1)} | |"
    )
    for label, key in (("p50 ms", "p50_ms"), ("p99 ms", "p99_ms")):
        # The same send rate on both sides: the latency cost of the cluster at equal load.
        common = [
            (s, c)
            for s in single.get("steps") or []
            for c in cluster.get("steps") or []
            if s.get("send_rate") == c.get("send_rate") and not s.get("retry") and not c.get("retry")
        ]
        if common:
            s, c = common[len(common) // 2]
            lines.append(
                f"| {label} at {fmt(s.get('send_rate'))} sent/s ({fmt(s.get('delivered_per_sec'))} / "
                f"{fmt(c.get('delivered_per_sec'))} delivered/s) | {fmt(get(s, 'latency', key), 1)} | "
                f"{fmt(get(c, 'latency', key), 1)} | {ratio(get(c, 'latency', key), get(s, 'latency', key))} |"
            )
    lines.append(
        f"| runs | {single.get('runs', 1)} (median) | {cluster.get('runs', 1)}"
        f"{' (median)' if cluster.get('runs', 1) > 1 else ''} | |"
    )
    lines.append("")
    notes = []
    for name, value in (("single Redis", single), ("Redis Cluster", cluster)):
        if value.get("error"):
            notes.append(f"- {name}: failed: `{value['error']}`")
        elif value.get("limit_reached") is False:
            notes.append(f"- {name} never crossed the limit; the ramp ended at its highest rate, so its figure is a lower bound.")
    if notes:
        lines += ["Notes:", "", *notes, ""]
    path = os.path.join(plots_dir, f"{stamp}-fanout-cluster.svg")
    title = "fan-out, roomcast: single Redis vs Redis Cluster"
    if svg_plot(title, {"single Redis": step_points(single.get("steps")), "Redis Cluster": step_points(cluster.get("steps"))}, path):
        lines += [f"![{title}]({os.path.relpath(path, md_dir)})", ""]
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True, action="append",
                        help="results file; repeat to lay later single-scenario runs over a full run")
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--plots", required=True)
    args = parser.parse_args()
    results, merged = load_results(args.results)
    scenarios = results.get("scenarios", {})
    # Plots are named after the run they come from (the cluster plot after the last run).
    stamp = os.path.basename(args.results[0])[: -len(".json")]
    last_stamp = os.path.basename(args.results[-1])[: -len(".json")]
    md_dir = os.path.dirname(os.path.abspath(args.markdown))

    rows = []
    notes = []

    def row(name, metric, ours, theirs, better, goal="", digits=0):
        r = ratio(ours, theirs)
        rows.append(f"| {name} | {metric} | {fmt(ours, digits)} | {fmt(theirs, digits)} | {r} | {goal} |")

    for name, label in (("fanout", "(1) fan-out, 1 room × 1,000"), ("chat", "(2) chat, 1,000 rooms × 10")):
        sc = scenarios.get(name)
        if not sc:
            continue
        for peer in PEERS:
            if error_of(sc, peer):
                notes.append(f"- {label}: {peer} failed: `{error_of(sc, peer)}`")
        ours, theirs = get(sc, "roomcast", "max_sustained_delivered_per_sec"), get(sc, "node", "max_sustained_delivered_per_sec")
        goal = ""
        if name == "fanout":
            reached = ours is not None and theirs not in (None, 0) and ours / theirs >= 3
            goal = "≥ 3× — " + ("reached" if reached else "**not reached**")
        row(label, "max sustained delivered msg/s (p99 ≤ 100 ms, ≥ 99.9 %)", ours, theirs, "higher", goal)
        row(label, "p50 / p99 ms at that rate",
            f"{fmt(get(sc, 'roomcast', 'at_max_p50_ms'), 1)} / {fmt(get(sc, 'roomcast', 'at_max_p99_ms'), 1)}",
            f"{fmt(get(sc, 'node', 'at_max_p50_ms'), 1)} / {fmt(get(sc, 'node', 'at_max_p99_ms'), 1)}", "lower")
        for peer in PEERS:
            runs = get(sc, peer, "runs_max_sustained_delivered_per_sec")
            if runs:
                notes.append(f"- {label}: {peer}: median of {len(runs)} runs (the lower middle one for an even count), peers alternating; "
                             f"each run's maximum: {', '.join(fmt(r) for r in runs)} msg/s")
            if get(sc, peer, "runs_errors"):
                notes.append(f"- {label}: {peer}: failed runs: `{'; '.join(get(sc, peer, 'runs_errors'))}`")
            if get(sc, peer, "limit_reached") is False and not error_of(sc, peer):
                notes.append(f"- {label}: {peer} never crossed the limit; the ramp ended at its highest rate, so its figure is a lower bound.")

    sc = scenarios.get("idle")
    if sc:
        ours, theirs = get(sc, "roomcast", "rss_per_connection_kib"), get(sc, "node", "rss_per_connection_kib")
        reached = ours is not None and theirs not in (None, 0) and ours <= theirs / 3
        row("(3) idle memory, 10,000 sockets on one instance", "RSS per connection, KiB", ours, theirs, "lower",
            "≤ 1/3 — " + ("reached" if reached else "**not reached**"), 1)
        c_ours, c_theirs = get(sc, "roomcast", "connected"), get(sc, "node", "connected")
        row("(3) idle memory", "sockets held by one instance", c_ours, c_theirs, "higher",
            "10,000 — " + ("reached" if (c_ours or 0) >= 10000 else "**not reached**"))
        for peer in PEERS:
            if error_of(sc, peer):
                notes.append(f"- idle: {peer} failed: `{error_of(sc, peer)}`")
    sc = scenarios.get("storm")
    if sc:
        row("(4) connect storm, 3 instances", "connections accepted/s",
            get(sc, "roomcast", "accepted_per_sec"), get(sc, "node", "accepted_per_sec"), "higher")
        row("(4) connect storm", "failed handshakes", get(sc, "roomcast", "failed"), get(sc, "node", "failed"), "lower")
    sc = scenarios.get("http")
    if sc:
        row("(5) HTTP `GET /api/me`, Redis session", "requests/s",
            get(sc, "roomcast", "requests_per_sec"), get(sc, "node", "requests_per_sec"), "higher")
        row("(5) HTTP", "p99 ms", get(sc, "roomcast", "latency", "p99_ms"), get(sc, "node", "latency", "p99_ms"), "lower", digits=2)
    sc = scenarios.get("drain")
    if sc:
        row("(6) drain 5,000 sockets (SIGTERM)", "s until all reconnected elsewhere",
            get(sc, "roomcast", "all_reconnected_secs"), get(sc, "node", "all_reconnected_secs"), "lower", digits=2)
        row("(6) drain", "s until the process exited",
            get(sc, "roomcast", "process_exit_secs"), get(sc, "node", "process_exit_secs"), "lower", digits=2)
        row("(6) drain", "sockets lost", get(sc, "roomcast", "lost"), get(sc, "node", "lost"), "lower", "0")

    ceiling_rows = []
    publish = get(scenarios, "ceiling", "publish", "csv")
    publish_rps = None
    if publish:
        parts = publish.split(",")
        try:
            publish_rps = float(parts[1])
        except (IndexError, ValueError):
            publish_rps = None
    echo_rate = get(scenarios, "ceiling", "echo", "messages_per_sec")
    fan = get(scenarios, "fanout", "roomcast", "max_sustained_delivered_per_sec")
    fan_send = get(scenarios, "fanout", "roomcast", "max_sustained_send_rate")
    chat_send = get(scenarios, "chat", "roomcast", "max_sustained_send_rate")
    if publish_rps:
        ceiling_rows.append(f"| `redis-benchmark` PUBLISH, 50 clients | {fmt(publish_rps)} PUBLISH/s | chat: roomcast sustained {fmt(chat_send)} messages/s (each one PUBLISH) = {fmt(chat_send / publish_rps * 100 if chat_send else None, 2)} % |")
    if echo_rate:
        ceiling_rows.append(f"| raw WebSocket echo (tokio-tungstenite, 2 threads), {get(scenarios, 'ceiling', 'echo', 'connections')} closed loops | {fmt(echo_rate)} messages/s | fan-out: roomcast delivered {fmt(fan)} messages/s = {fmt(fan / echo_rate * 100 if fan else None, 1)} % |")

    plots = []
    os.makedirs(args.plots, exist_ok=True)
    for name, title in (("fanout", "fan-out: 1 room, 1,000 members, 3 instances"), ("chat", "chat: 1,000 rooms of 10, 3 instances")):
        if name not in scenarios:
            continue
        path = os.path.join(args.plots, f"{stamp}-{name}.svg")
        if svg_plot(title, ramp_series(scenarios[name]), path):
            plots.append((title, os.path.relpath(path, md_dir)))

    machine = results.get("machine", {})
    versions = results.get("versions", {})
    settings = results.get("settings", {})
    pkgs = ", ".join(f"{k} {v}" for k, v in (versions.get("node_peer_packages") or {}).items())
    lines = [
        "# Benchmarks: roomcast vs. the Node.js socket.io stack",
        "",
        "Generated by `./bench/run.sh` from "
        f"`{os.path.relpath(os.path.abspath(args.results[0]), md_dir)}` — do not edit by hand.",
        f"Run started {results.get('started')}, took {results.get('elapsed_secs')} s"
        + (" (**smoke run: tiny sizes, figures meaningless**)" if results.get("smoke") else "") + ".",
        *[
            f"Scenario{'s' if len(names) > 1 else ''} {', '.join(names)} from the later run "
            f"`{os.path.relpath(os.path.abspath(path), md_dir)}` (started {extra.get('started')}, "
            f"took {extra.get('elapsed_secs')} s, load average at the end "
            f"{fmt(get(extra, 'machine', 'load_average_at_end'), 2)}, commit {get(extra, 'versions', 'roomcast_commit')})."
            for path, extra, names in merged
        ],
        "",
        "## Machine and versions",
        "",
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB RAM; "
        f"{machine.get('os')}, kernel {machine.get('kernel')}; load average at the end {machine.get('load_average_at_end')}",
        "- Everything on this one machine: both peers' instances, Redis, PostgreSQL and the load "
        "generator share its cores, so absolute figures are low and ratios are what matters.",
        f"- roomcast commit {versions.get('roomcast_commit')}, {versions.get('rustc')}",
        f"- Node peer: node {versions.get('node')}; {pkgs}",
        f"- {versions.get('redis')}",
        f"- {versions.get('postgresql')}",
        "",
        "## Settings",
        "",
        f"- {settings.get('instances_per_peer')} instances per peer, one shared Redis and PostgreSQL "
        "(separate databases), Redis flushed and fresh instances started for every scenario and peer.",
        f"- roomcast: {settings.get('roomcast_env')}",
        f"- Node peer: {settings.get('node_env')}",
        f"- PostgreSQL: {settings.get('postgresql')}; Redis: {settings.get('redis')}",
        *([f"- Redis Cluster (fanout-cluster, roomcast only): {settings.get('redis_cluster')}"] if settings.get("redis_cluster") else []),
        "- Load generator: `bench/loadgen` (Rust, tokio + tokio-tungstenite), Engine.IO 4 / Socket.IO 5 "
        "over WebSocket, 20 users' session cookies shared by all sockets, sockets spread round-robin "
        "over the instances; latency is from the sender's write to each receiver's read, in one process.",
        "",
        "## Commands",
        "",
        "```",
        "./bench/run.sh            # everything (this report)",
        "./bench/run.sh fanout     # one scenario: fanout | fanout-cluster | chat | idle | storm | http | drain | ceiling",
        "./bench/run.sh smoke      # tiny sizes, writes to a temp dir (part of scripts/test)",
        "```",
        "",
        "## Results",
        "",
        "| scenario | metric | roomcast | Node peer | roomcast / Node | goal |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    if ceiling_rows:
        lines += [
            "## Ceiling on this machine (same run)",
            "",
            "| what | rate | roomcast as a fraction |",
            "|---|---|---|",
            *ceiling_rows,
            "",
        ]
    for title, rel in plots:
        lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    lines += cluster_section(scenarios, args.plots, last_stamp, md_dir)
    lines += ["## Ramp steps", ""]
    for name in ("fanout", "fanout-cluster", "chat"):
        for peer in PEERS:
            steps = get(scenarios, name, peer, "steps") or []
            if not steps:
                continue
            lines += [
                f"**{name} — {peer}**",
                "",
                "| sent/s | delivered/s | delivery | dupes | p50 ms | p99 ms | max ms | send→ack p50 / p99 ms | ack errors | server CPU cores | server RSS MiB | |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for s in steps:
                lines.append(
                    f"| {fmt(s.get('send_rate'))} | {fmt(s.get('delivered_per_sec'))} | {s.get('delivery_ratio')} | "
                    f"{s.get('duplicates')} | {fmt(get(s, 'latency', 'p50_ms'), 1)} | {fmt(get(s, 'latency', 'p99_ms'), 1)} | "
                    f"{fmt(get(s, 'latency', 'max_ms'), 1)} | "
                    f"{fmt(get(s, 'ack_latency', 'p50_ms'), 1)} / {fmt(get(s, 'ack_latency', 'p99_ms'), 1)} | {s.get('acks_error')} | "
                    f"{get(s, 'resources', 'server_cpu_cores')} | {get(s, 'resources', 'server_rss_mib')} | "
                    f"{'retry' if s.get('retry') else ''}{' ✗' if s.get('passed') is False else ''} |"
                )
            lines.append("")
    with open(args.markdown, "w", encoding="utf-8") as md:
        md.write("\n".join(lines))


if __name__ == "__main__":
    main()
