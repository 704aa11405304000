#!/usr/bin/env python3
"""Gathers the per-scenario JSON files of one bench run, the machine and the versions into
one results file (bench/results/<date>.json). Standard library only."""

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess


def command_output(*argv):
    """First line of a command's output, or None when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_gib():
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def clock_ticks():
    try:
        return os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


def node_packages(lock_path):
    """Pinned versions of the Node peer's direct dependencies."""
    try:
        with open(lock_path, encoding="utf-8") as lock:
            data = json.load(lock)
    except (OSError, ValueError):
        return {}
    root = data.get("packages", {}).get("", {})
    return {
        name: data["packages"].get(f"node_modules/{name}", {}).get("version")
        for name in sorted(root.get("dependencies", {}))
    }


# Figures of a throughput search summarised over its runs: (name, path into one run's result).
SEARCH_FIGURES = (
    ("max_delivered_per_sec", ("max_sustained_delivered_per_sec",)),
    ("max_messages_per_sec", ("max_sustained_messages_per_sec",)),
    ("max_send_rate", ("max_sustained_send_rate",)),
    ("at_max_p50_ms", ("at_max_p50_ms",)),
    ("at_max_p99_ms", ("at_max_p99_ms",)),
    ("at_max_cpu_us_per_delivery", ("at_max_cpu_us_per_delivery",)),
    ("probe_cpu_us_per_delivery", ("probe", "resources", "cpu_us_per_delivery")),
    ("probe_delivered_per_sec", ("probe", "delivered_per_sec")),
    ("probe_p99_ms", ("probe", "latency", "p99_ms")),
    ("half_ack_p50_ms", ("at_half", "ack_latency", "p50_ms")),
    ("half_ack_p99_ms", ("at_half", "ack_latency", "p99_ms")),
    ("half_messages_per_sec", ("at_half", "messages_per_sec")),
)


def dig(data, path):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, (int, float)) and not isinstance(data, bool) else None


def summarize(runs):
    """Median (the lower middle one for an even count, so always a measured run's figure),
    min and max of every search figure over the runs that produced it."""
    summary = {}
    for name, path in SEARCH_FIGURES:
        values = [value for value in (dig(run, path) for run in runs) if value is not None]
        if values:
            summary[name] = {
                "median": statistics.median_low(values),
                "min": min(values),
                "max": max(values),
                "runs": values,
            }
    return summary


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--elapsed", type=int, required=True)
    parser.add_argument("--smoke", default="0")
    parser.add_argument("--scenario", default="all")
    parser.add_argument("--roomcast-bin", required=True)
    parser.add_argument("--pg-bin", required=True)
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    scenarios = {}
    for path in sorted(glob.glob(os.path.join(args.results, "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        # `<scenario>-<peer>.json`; scenario names may hold a dash (fanout-cluster), peers not.
        scenario, _, peer = name.rpartition("-")
        try:
            with open(path, encoding="utf-8") as result:
                value = json.load(result)
        except (OSError, ValueError) as err:
            value = {"error": f"unreadable result: {err}"}
        scenarios.setdefault(scenario, {})[peer] = value

    # Repeated searches (`<scenario>-<peer>.r<n>.json`): the peer's figures are those of the
    # run with the median maximum (its steps are shown); every run's figures are kept in
    # `summary` as median and spread.
    for scenario, peers in scenarios.items():
        repeated = {}
        for key in [key for key in peers if ".r" in key]:
            peer, _, _ = key.partition(".r")
            repeated.setdefault(peer, []).append(peers.pop(key))
        for peer, runs in repeated.items():
            ordered = sorted(runs, key=lambda run: run.get("max_sustained_delivered_per_sec") or 0)
            chosen = dict(ordered[(len(ordered) - 1) // 2])
            chosen["runs"] = len(runs)
            chosen["runs_max_sustained_delivered_per_sec"] = [
                run.get("max_sustained_delivered_per_sec") for run in runs
            ]
            chosen["runs_errors"] = [run["error"] for run in runs if "error" in run]
            chosen["summary"] = summarize(runs)
            peers[peer] = chosen
        for peer, value in peers.items():
            if isinstance(value, dict) and "steps" in value and "summary" not in value:
                value["runs"] = 1
                value["summary"] = summarize([value])

    git_rev = command_output("git", "-C", here, "rev-parse", "--short", "HEAD")
    results = {
        "started": args.started,
        "elapsed_secs": args.elapsed,
        "smoke": args.smoke == "1",
        "scenario": args.scenario,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": memory_gib(),
            "kernel": platform.release(),
            "os": command_output("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
            "load_average_at_end": os.getloadavg()[0],
        },
        "versions": {
            "roomcast_commit": git_rev,
            "rustc": command_output("rustc", "--version"),
            "node": command_output("node", "--version"),
            "node_peer_packages": node_packages(os.path.join(here, "peers", "node", "package-lock.json")),
            "redis": command_output("redis-server", "--version"),
            "postgresql": command_output(os.path.join(args.pg_bin, "postgres"), "--version"),
        },
        "settings": {
            "instances_per_peer": 3,
            "clock_ticks_per_sec": clock_ticks(),
            "roomcast_env": "MESSAGE_RATE_PER_SEC=1000000 MESSAGE_RATE_BURST=1000000 "
            "CONNECTION_RATE_PER_IP=1000000 CONNECTION_BURST_PER_IP=1000000 MAX_CONNECTIONS=30000 "
            "SHUTDOWN_TIMEOUT_SECS=10 RUST_LOG=warn, release build run as a plain binary "
            "(no MALLOC_* variables)",
            "node_env": "NODE_ENV=production MESSAGE_RATE_PER_SEC=1000000",
            "postgresql": "fsync=off full_page_writes=off max_connections=200 (as in the test harness)",
            "redis": "--save '' --appendonly no",
            "redis_cluster": "6 nodes on this machine (3 masters, 1 replica each, "
            "--cluster-node-timeout 5000, --save '' --appendonly no), roomcast with "
            "REDIS_CLUSTER_NODES listing all 6 (sharded Pub/Sub)",
        },
        "scenarios": scenarios,
    }
    results["settings"]["search"] = (
        "offered rate doubled from a start rate until a step fails, then bisected (geometric "
        "midpoint) until the bracket is narrower than 10 %; a failed step runs twice before it counts"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2, sort_keys=False)
        out.write("\n")


if __name__ == "__main__":
    main()
