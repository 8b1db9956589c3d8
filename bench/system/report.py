#!/usr/bin/env python3
"""Turns the raw data of driver.py ($BENCH_WORK/raw) into OUT/report.md, OUT/summary.json,
OUT/steps.csv and PNG plots.   usage: report.py OUT [RAW]"""

import csv
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUT = sys.argv[1]
RAW = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.environ["BENCH_WORK"], "raw")


def load(name, default=None):
    try:
        with open(os.path.join(RAW, name)) as f:
            return json.load(f)
    except OSError:
        return default


meta = load("meta.json", {})
rows = load("samples.json", [])
steps = load("steps.json", [])
probe = load("probe.json", {"records": [], "samples": []})
scale = load("scale.json")
CLK = meta.get("clk_tck", 100)
NPROC = meta.get("nproc", 2)
SERVICES = ["twitch-sim", "streamer-listener", "streamer-ingestion", "chat-listener", "chat-ingestor", "chat-api"]
STACK = ["kafka", "cassandra", "registry"]
PROCS = SERVICES + STACK + ["bench-driver"]
PIPELINE = [p for p in PROCS if p not in ("twitch-sim", "bench-driver")]
COLORS = dict(zip(PROCS + ["other"], plt.get_cmap("tab20").colors))
T0 = rows[0]["t"] if rows else 0


# ------------------------------------------------------------------ per-sample series
def series_rate(key, smooth=3):
    """Per-second rate of a counter between successive samples, smoothed over `smooth` samples."""
    t, v = [], []
    prev = None
    for r in rows:
        x = r.get(key)
        if x is None:
            prev = None
            continue
        if prev is not None and r["t"] > prev[0] and x >= prev[1]:
            t.append(r["t"])
            v.append((x - prev[1]) / (r["t"] - prev[0]))
        prev = (r["t"], x)
    if smooth > 1 and len(v) >= smooth:
        v = list(np.convolve(v, np.ones(smooth) / smooth, mode="same"))
    return np.array(t), np.array(v)


def cpu_series(name):
    """CPU % (100 = one core) per sample interval."""
    t, v = [], []
    prev = None
    for r in rows:
        x = r.get(f"ticks.{name}")
        if x is None:
            prev = None
            continue
        if prev is not None and r["t"] > prev[0] and x >= prev[1]:
            t.append(r["t"])
            v.append(100.0 * (x - prev[1]) / CLK / (r["t"] - prev[0]))
        prev = (r["t"], x)
    return np.array(t), np.array(v)


def machine_series():
    t, v = [], []
    for a, b in zip(rows, rows[1:]):
        dt = b["machine_total_ticks"] - a["machine_total_ticks"]
        if dt > 0:
            t.append(b["t"])
            v.append(100.0 * NPROC * (b["machine_busy_ticks"] - a["machine_busy_ticks"]) / dt)
    return np.array(t), np.array(v)


def window(t0, t1):
    return [r for r in rows if t0 <= r["t"] <= t1]


def delta_rate(ws, key):
    ws = [r for r in ws if r.get(key) is not None]
    if len(ws) < 2 or ws[-1]["t"] <= ws[0]["t"]:
        return None
    return (ws[-1][key] - ws[0][key]) / (ws[-1]["t"] - ws[0]["t"])


def cpu_in(ws, name):
    ws = [r for r in ws if r.get(f"ticks.{name}") is not None]
    if len(ws) < 2:
        return None
    return 100.0 * (ws[-1][f"ticks.{name}"] - ws[0][f"ticks.{name}"]) / CLK / (ws[-1]["t"] - ws[0]["t"])


def machine_in(ws):
    if len(ws) < 2:
        return None
    dt = ws[-1]["machine_total_ticks"] - ws[0]["machine_total_ticks"]
    return 100.0 * NPROC * (ws[-1]["machine_busy_ticks"] - ws[0]["machine_busy_ticks"]) / dt if dt else None


def rss_in(ws, name, f=max):
    v = [r[f"rss.{name}"] for r in ws if r.get(f"rss.{name}") is not None]
    return f(v) if v else None


def mean(v):
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else None


def backlog(r):
    a, b = r.get("listener.published"), r.get("ingestor.written")
    return None if a is None or b is None else a - b


def pct(vals, q):
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))]


def hist_quantile(b0, b1, q):
    """Quantile from the difference of two cumulative Prometheus histograms."""
    if not b0 or not b1:
        return None
    les = sorted(b1, key=lambda k: float("inf") if k == "+Inf" else float(k))
    cum = [(float("inf") if k == "+Inf" else float(k), b1[k] - b0.get(k, 0.0)) for k in les]
    total = cum[-1][1]
    if total <= 0:
        return None
    want = q * total
    lo_le, lo_c = 0.0, 0.0
    for le, c in cum:
        if c >= want:
            if le == float("inf"):
                return lo_le
            return lo_le + (le - lo_le) * ((want - lo_c) / (c - lo_c) if c > lo_c else 1.0)
        lo_le, lo_c = le, c
    return None


def fmt(x, d=0, unit=""):
    if x is None:
        return "–"
    if isinstance(x, float) and d == 0:
        return f"{x:,.0f}{unit}"
    return f"{x:,.{d}f}{unit}"


# ------------------------------------------------------------------ steps
lag_records = probe.get("records", [])
step_stats = []
for s in steps:
    a, b = s["t0"] + s.get("settle", 0), s["t1"]
    ws = window(a, b)
    lags = [seen - ts for _, ts, seen, _ in lag_records if a * 1000 <= ts <= b * 1000]
    e2e = (ws[0].get("ingestor.e2e_buckets"), ws[-1].get("ingestor.e2e_buckets")) if ws else (None, None)
    bls = [backlog(r) for r in ws if backlog(r) is not None]
    st = {
        "rate": s["rate"], "secs": round(b - a, 1), "aborted": s.get("aborted"),
        "generated": delta_rate(ws, "sim.generated_lines"),
        "generated_privmsg": delta_rate(ws, "sim.generated_privmsgs"),
        "received": delta_rate(ws, "listener.lines"),
        "published": delta_rate(ws, "listener.published"),
        "stored": delta_rate(ws, "ingestor.written"),
        "stored_chat": delta_rate(ws, "ingestor.written_chat"),
        "lag_p50": pct(lags, 50), "lag_p99": pct(lags, 99), "lag_max": max(lags) if lags else None,
        "lag_n": len(lags), "lag_late": sum(1 for _, ts, _, k in lag_records if k == "sweep" and a * 1000 <= ts <= b * 1000),
        "ingest_lag_p50": hist_quantile(e2e[0], e2e[1], 0.5), "ingest_lag_p99": hist_quantile(e2e[0], e2e[1], 0.99),
        "backlog_end": bls[-1] if bls else None, "backlog_max": max(bls) if bls else None,
        "backlog_slope": s.get("backlog_slope"),
        "consumer_lag_max": max([r.get("ingestor.consumer_lag") or 0 for r in ws], default=None),
        "buffer_mean": mean([r.get("listener.buffer") for r in ws]),
        "buffer_max": max([r.get("listener.buffer") or 0 for r in ws], default=None),
        "in_flight_mean": mean([r.get("listener.in_flight") for r in ws]),
        "dropped_frames": s.get("dropped_frames"),
        "cpu": {p: cpu_in(ws, p) for p in PROCS},
        "rss": {p: rss_in(ws, p) for p in PROCS},
        "machine_cpu": machine_in(ws),
        "unbounded": s.get("unbounded"),
    }
    tracked = sum(v for v in st["cpu"].values() if v is not None)
    st["cpu"]["other"] = max(0.0, (st["machine_cpu"] or 0) - tracked)
    st["ok"] = (not st["unbounded"] and st["lag_p99"] is not None and st["lag_p99"] < 2000
                and st["secs"] >= 59 and (st["stored"] or 0) >= 0.97 * (st["generated"] or 0))
    step_stats.append(st)

sustained = max((s for s in step_stats if s["ok"]), key=lambda s: s["rate"], default=None)
realistic = next((s for s in step_stats if s["rate"] == 1600), step_stats[0] if step_stats else None)
first_bad = next((s for s in step_stats if not s["ok"]), None)


def saturation_text():
    s = first_bad or (step_stats[-1] if step_stats else None)
    if not s:
        return "no step ran", None
    cpu = {k: v for k, v in s["cpu"].items() if v is not None}
    top = sorted(cpu.items(), key=lambda kv: -kv[1])
    machine = s["machine_cpu"] or 0
    parts = []
    if (s["dropped_frames"] or 0) > 0 or (s["buffer_mean"] or 0) > 5000:
        where = "chat-listener (ingress)"
        parts.append(f"the listener could not keep up: its buffer averaged {fmt(s['buffer_mean'])} records and the sim dropped {s['dropped_frames']} frames for slow reading")
    elif (s["backlog_slope"] or 0) > 0.02 * s["rate"] or (s["stored"] or 0) < 0.97 * (s["generated"] or 1):
        where = "the write path (chat-ingestor → Cassandra)"
        parts.append(f"records published but not yet written grew by {fmt(s['backlog_slope'])} per second (to {fmt(s['backlog_end'])}), "
                     f"while the listener's buffer stayed at {fmt(s['buffer_mean'])} on average (max {fmt(s['buffer_max'])}) and the sim dropped no frames")
    elif s["lag_p99"] is not None and s["lag_p99"] >= 2000:
        where = "latency (no backlog growth)"
        parts.append(f"lag p99 was {s['lag_p99'] / 1000:.1f} s although the backlog did not grow")
    else:
        where = "nothing (the highest step passed)"
    parts.append(f"the machine was {machine:.0f}% busy of {NPROC * 100}% "
                 + "(" + ", ".join(f"{k} {v:.0f}%" for k, v in top[:6]) + ")")
    return f"At {s['rate']:,} msg/s, {where} saturated first: " + "; ".join(parts) + ".", where


sat_text, sat_where = saturation_text()


def cost_model():
    """Core-seconds per 1,000 stored messages at the sustained step, for the pipeline only."""
    s = sustained or realistic
    if not s or not s["stored"]:
        return None
    pipe = sum(s["cpu"][p] or 0 for p in PIPELINE) / 100.0
    load = sum((s["cpu"].get(p) or 0) for p in ("twitch-sim", "bench-driver")) / 100.0
    per_k = pipe / (s["stored"] / 1000.0)
    return {"rate": s["rate"], "pipeline_cores": pipe, "load_cores": load, "cores_per_1k": per_k,
            "ceiling_2": (NPROC - load) / per_k * 1000.0, "ceiling_3": (NPROC + 1 - load) / per_k * 1000.0,
            "per_process": {p: (s["cpu"][p] or 0) / 100.0 / (s["stored"] / 1000.0) for p in PIPELINE}}


cost = cost_model()

# ------------------------------------------------------------------ storage figures
kafka = meta.get("kafka", {})
json_sizes = [len(m.get("message", "").encode()) for m in probe.get("samples", [])]
api_obj_sizes = [len(json.dumps(m, ensure_ascii=False).encode()) for m in probe.get("samples", [])]
storage_md = (meta.get("storage_example") or {}).get("markdown", "") or ""
m = re.search(r"(\d+) messages in `[^`]+`(?: \([^)]*\))?; message JSON (\d+) B/message, raw IRC line (\d+) B/message", storage_md)
stored_msgs = int(m.group(1)) if m else None
json_per_msg = float(m.group(2)) if m else (mean(json_sizes))
raw_per_msg = float(m.group(3)) if m else None
ts = meta.get("tablestats", {})
# Storage v3's by-user index, and v2's for rows written before it.
chat_tables = ["chat_messages", "chat_buckets", "user_chat_index", "user_chat_days",
               "user_chat_messages", "user_chat_buckets"]
mod_tables = ["moderation_events", "deleted_messages"]
chat_bytes = sum(ts.get(t, {}).get("space_used_live", 0) for t in chat_tables) if ts else None
mod_bytes = sum(ts.get(t, {}).get("space_used_live", 0) for t in mod_tables) if ts else None
written_chat = (meta.get("a_final") or {}).get("ingestor.written_chat")
written_mod = (meta.get("a_final") or {}).get("ingestor.written_moderation")
n_chat = stored_msgs or written_chat
cass_per_msg = chat_bytes / n_chat if chat_bytes and n_chat else None
kchat = kafka.get("chat", {})
kafka_per_msg = kchat["bytes"] / kchat["records"] if kchat.get("records") else None
kmod = kafka.get("moderation", {})
kafka_per_mod = kmod["bytes"] / kmod["records"] if kmod.get("records") else None

# ------------------------------------------------------------------ plots
os.makedirs(OUT, exist_ok=True)
plots = []


def shade_steps(ax):
    for i, s in enumerate(steps):
        ax.axvspan(s["t0"] - T0, s["t1"] - T0, color="0.92" if i % 2 else "0.85", zorder=0)
        ax.text((s["t0"] + s["t1"]) / 2 - T0, 1.0, f"{s['rate'] / 1000:g}k", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8)


a_end = (steps[-1]["t1"] + 30) if steps else (rows[-1]["t"] if rows else 0)
if steps:
    a_start = steps[0]["t0"] - 20
    fig, ax = plt.subplots(figsize=(11, 4.5))
    shade_steps(ax)
    tt = [r["t"] - T0 for r in rows if a_start <= r["t"] <= a_end]
    tg = [r["target"] for r in rows if a_start <= r["t"] <= a_end]
    ax.step(tt, tg, where="post", color="black", lw=1, ls="--", label="target (sim rate)")
    for key, label in (("sim.generated_lines", "sent by twitch-sim"), ("listener.published", "published by chat-listener"),
                       ("ingestor.written", "stored by chat-ingestor")):
        t, v = series_rate(key)
        sel = (t >= a_start) & (t <= a_end)
        ax.plot(t[sel] - T0, v[sel], lw=1.2, label=label)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("messages / s")
    ax.set_title("Rate steps: sent, published, stored")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "rate.png"), dpi=110)
    plt.close(fig)
    plots.append(("rate.png", "Messages per second sent, published and stored, with the rate steps"))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    shade_steps(ax1)
    shade_steps(ax2)
    live = [(ts / 1000 - T0, (seen - ts) / 1000) for _, ts, seen, k in lag_records if a_start * 1000 <= ts <= a_end * 1000]
    late = [(ts / 1000 - T0, (seen - ts) / 1000) for _, ts, seen, k in lag_records if k == "sweep" and a_start * 1000 <= ts <= a_end * 1000]
    if live:
        ax1.scatter([x for x, _ in live], [max(y, 0.01) for _, y in live], s=2, alpha=0.35, label="one message (prober)")
    if late:
        ax1.scatter([x for x, _ in late], [max(y, 0.01) for _, y in late], s=6, color="red", label="seen only by the final sweep")
    for st, s in zip(step_stats, steps):
        a, b = s["t0"] + s.get("settle", 0) - T0, s["t1"] - T0
        if st["lag_p50"] is not None:
            ax1.hlines(st["lag_p50"] / 1000, a, b, color="green", lw=2, label="p50 per step" if s is steps[0] else None)
            ax1.hlines(st["lag_p99"] / 1000, a, b, color="red", lw=2, label="p99 per step" if s is steps[0] else None)
    ax1.axhline(2.0, color="red", ls=":", lw=1)
    ax1.set_yscale("log")
    ax1.set_ylabel("end-to-end lag, s\n(tmi-sent-ts → readable in chat-api)")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    sel = [r for r in rows if a_start <= r["t"] <= a_end]
    ax2.plot([r["t"] - T0 for r in sel], [backlog(r) for r in sel], label="published − stored (records)")
    ax2.plot([r["t"] - T0 for r in sel], [r.get("ingestor.consumer_lag") for r in sel], label="chat-ingestor consumer lag (librdkafka, 5 s)")
    ax2.plot([r["t"] - T0 for r in sel], [r.get("listener.buffer") for r in sel], label="chat-listener buffer")
    ax2.plot([r["t"] - T0 for r in sel], [r.get("listener.in_flight") for r in sel], label="chat-listener in flight to Kafka", lw=0.8)
    ax2.set_ylabel("records")
    ax2.set_xlabel("seconds since start")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "lag.png"), dpi=110)
    plt.close(fig)
    plots.append(("lag.png", "End-to-end lag per probed message (log scale) and the queues: Kafka backlog vs the listener's buffer"))

if rows:
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    shade_steps(ax1)
    base = None
    series = {}
    grid_t = np.array([r["t"] for r in rows[1:]])
    for p in PROCS:
        t, v = cpu_series(p)
        if len(t):
            series[p] = np.interp(grid_t, t, v, left=0, right=0)
            series[p][(grid_t < t[0]) | (grid_t > t[-1])] = 0
    mt, mv = machine_series()
    if len(mt):
        other = np.interp(grid_t, mt, mv) - sum(series.values())
        series["other"] = np.clip(other, 0, None)
    k = 5
    smooth = {p: np.convolve(v, np.ones(k) / k, mode="same") for p, v in series.items()}
    names = [p for p in PROCS + ["other"] if p in smooth]
    ax1.stackplot(grid_t - T0, [smooth[p] for p in names], labels=names, colors=[COLORS[p] for p in names], alpha=0.9)
    ax1.axhline(NPROC * 100, color="black", ls=":", lw=1)
    ax1.set_ylabel("CPU % (100 = one core)")
    ax1.set_title(f"CPU per process ({NPROC} cores), stacked; 'other' = the rest of the machine")
    ax1.legend(loc="upper left", fontsize=7, ncol=3)
    ax1.grid(alpha=0.3)
    for p in PROCS:
        tt = [r["t"] - T0 for r in rows if r.get(f"rss.{p}") is not None]
        vv = [r[f"rss.{p}"] for r in rows if r.get(f"rss.{p}") is not None]
        if tt:
            ax2.plot(tt, vv, label=p, color=COLORS[p], lw=1.2)
    ax2.set_yscale("log")
    ax2.set_ylabel("RSS, MB (log)")
    ax2.set_xlabel("seconds since start (the right part: chat-listener at scale)")
    ax2.legend(loc="upper left", fontsize=7, ncol=3)
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "cpu.png"), dpi=110)
    plt.close(fig)
    plots.append(("cpu.png", "CPU per process (stacked) and RSS per process over the whole run"))

if step_stats:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(step_stats))
    ax.bar(x - 0.2, [s["rate"] for s in step_stats], 0.4, label="target msg/s", color="0.7")
    ax.bar(x + 0.2, [s["stored"] or 0 for s in step_stats], 0.4, label="stored msg/s",
           color=["tab:green" if s["ok"] else "tab:red" for s in step_stats])
    ax.set_xticks(x, [f"{s['rate']:,}" for s in step_stats])
    ax.set_xlabel("step (target msg/s); green = sustained with lag p99 < 2 s")
    ax.set_ylabel("messages / s")
    ax2 = ax.twinx()
    ax2.plot(x, [(s["lag_p99"] or 0) / 1000 for s in step_stats], "o-", color="tab:red", label="lag p99 (s)")
    ax2.plot(x, [(s["lag_p50"] or 0) / 1000 for s in step_stats], "o-", color="tab:blue", label="lag p50 (s)")
    ax2.axhline(2.0, color="tab:red", ls=":")
    ax2.set_yscale("log")
    ax2.set_ylabel("end-to-end lag, s")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    ax.set_title("Per step: stored rate and end-to-end lag")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "steps.png"), dpi=110)
    plt.close(fig)
    plots.append(("steps.png", "Per rate step: stored vs target, lag p50/p99"))

scale_stats = None
if scale:
    runs = scale.get("runs", [])
    b0 = min(r["t0"] for r in runs) - 5 if runs else 0
    sel = [r for r in rows if r["t"] >= b0]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    ax1.plot([r["t"] - b0 for r in sel], [r.get("sim.joined_channels") for r in sel], label="channels joined (sim)")
    ax1.plot([r["t"] - b0 for r in sel], [r.get("sim.joins_refused") for r in sel], label="JOINs ignored by the sim (over the limit)")
    for r in runs:
        ax1.axvline(r["t0"] - b0, color="0.5", ls="--", lw=0.8)
        ax1.text(r["t0"] - b0, 0.98, " " + r["label"], transform=ax1.get_xaxis_transform(), fontsize=8, va="top")
    ax1.set_ylabel("channels")
    ax1.legend(loc="center right", fontsize=8)
    ax1.grid(alpha=0.3)
    t, v = cpu_series("chat-listener")
    s2 = (t >= b0)
    ax2.plot(t[s2] - b0, v[s2], color="tab:orange", label="chat-listener CPU %")
    ax2.set_ylabel("CPU %")
    ax3 = ax2.twinx()
    ax3.plot([r["t"] - b0 for r in sel if r.get("rss.chat-listener")], [r["rss.chat-listener"] for r in sel if r.get("rss.chat-listener")],
             color="tab:purple", label="chat-listener RSS MB")
    ax3.axhline(100, color="tab:purple", ls=":", lw=1)
    ax3.set_ylabel("RSS MB")
    for h in scale.get("holds", []):
        ax2.axvspan(h["t0"] - b0, h["t1"] - b0, color="0.9", zorder=0)
        ax2.text((h["t0"] + h["t1"]) / 2 - b0, 0.98, h["label"].replace("scale:", ""), transform=ax2.get_xaxis_transform(),
                 ha="center", va="top", fontsize=8)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    ax2.set_xlabel("seconds since the first chat-listener of this phase started")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"chat-listener at {scale['channels']:,} channels")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "listener-scale.png"), dpi=110)
    plt.close(fig)
    plots.append(("listener-scale.png", f"chat-listener at {scale['channels']:,} channels: joining, then idle and loaded"))
    scale_stats = []
    for h in scale.get("holds", []):
        ws = window(h["t0"] + 3, h["t1"])
        scale_stats.append({"label": h["label"], "rate": h["rate"], "cpu": cpu_in(ws, "chat-listener"),
                            "rss": rss_in(ws, "chat-listener"), "rss_mean": rss_in(ws, "chat-listener", mean),
                            "received": delta_rate(ws, "listener.lines"), "published": delta_rate(ws, "listener.published"),
                            "sim_cpu": cpu_in(ws, "twitch-sim"), "buffer_max": max([r.get("listener.buffer") or 0 for r in ws], default=None),
                            "dropped": (ws[-1].get("sim.dropped_frames") or 0) - (ws[0].get("sim.dropped_frames") or 0) if ws else None})

# ------------------------------------------------------------------ report
L = []
w = L.append
w("# System benchmark: the whole pipeline on one machine\n")
w(f"Run `{meta.get('id')}` of commit `{meta.get('commit', '?')}`, started {meta.get('started')}, "
  f"{meta.get('total_secs', 0) / 60:.1f} min. Machine: {NPROC} cores ({meta.get('cpu_model', '?')}), "
  f"{meta.get('mem_gib', '?')} GiB; Kafka, Cassandra and the registry on the same cores. {meta.get('quiet', '')}.\n")
w(f"`make bench-system` (bench/system/run.sh): twitch-sim with {meta.get('channels')} live channels "
  f"(PRIVMSG with emotes, badges, replies, bits, plus USERNOTICE / CLEARCHAT / CLEARMSG / ROOMSTATE), "
  f"the five services as release processes, own topics/groups/keyspace (deleted afterwards). "
  f"The rate steps up every {meta.get('step_secs', 0):.0f} s (the first {meta.get('settle_secs', 0):.0f} s of a step are not measured). "
  f"End-to-end lag: a prober polls chat-api every 250 ms for {len(meta.get('probe_channels', []))} channels "
  f"(each ~{100 * mean([c['share'] for c in meta.get('probe_channels', [])] or [0]):.1f}% of the chat) and records, per message, first readable minus `tmi-sent-ts` "
  f"(so it includes up to ~250 ms of polling granularity).\n")

w("## Headline\n")
if sustained:
    w(f"- **Highest rate sustained ≥ 60 s with end-to-end lag p99 < 2 s: {sustained['rate']:,} msg/s** "
      f"(stored {fmt(sustained['stored'])} msg/s; lag p50 {fmt(sustained['lag_p50'])} ms, p99 {fmt(sustained['lag_p99'])} ms).")
else:
    w("- **No step was sustained with lag p99 < 2 s.**")
target_met = sustained is not None and sustained["rate"] >= 16000
w(f"- Target ≥ 16,000 msg/s end to end with p99 < 2 s: **{'met' if target_met else 'not met'}**.")
w(f"- What saturates first: {sat_text}")
if cost:
    w(f"- Cost at {cost['rate']:,} msg/s: the pipeline (5 services + Kafka + Cassandra + registry) used "
      f"{cost['pipeline_cores']:.2f} cores = **{cost['cores_per_1k']:.3f} core-s per 1,000 messages**; the load generator "
      f"(twitch-sim + this driver) {cost['load_cores']:.2f} cores. If it stays CPU-bound and linear, the cores left after the "
      f"load generator carry ≈ {cost['ceiling_2']:,.0f} msg/s on {NPROC} cores and ≈ **{cost['ceiling_3']:,.0f} msg/s with one more core**.")
if scale_stats:
    idle = next((s for s in scale_stats if s["rate"] == 0), None)
    loaded = [s for s in scale_stats if s["rate"] > 0]
    w(f"- chat-listener at {scale['channels']:,} channels: RSS {fmt(idle and idle['rss'], 1)} MB idle, "
      + ", ".join(f"{fmt(s['rss'], 1)} MB at {s['rate']:,} msg/s" for s in loaded)
      + f" (target ≤ 100 MB: **{'met' if all((s['rss'] or 1e9) <= 100 for s in scale_stats) else 'not met'}**); "
      f"CPU {fmt(idle and idle['cpu'], 1)}% idle, " + ", ".join(f"{fmt(s['cpu'], 0)}% at {s['rate']:,} msg/s" for s in loaded) + ".")
if kafka_per_msg or cass_per_msg:
    w(f"- Bytes per chat message: message JSON {fmt(json_per_msg)} B; Kafka (Avro, lz4, on disk) **{fmt(kafka_per_msg)} B**; "
      f"Cassandra after flush + compaction, the chat tables (messages, bucket index, by-user index) together **{fmt(cass_per_msg)} B** "
      f"({fmt(100 * cass_per_msg / json_per_msg if cass_per_msg and json_per_msg else None)}% of the JSON; every row keeps the raw IRC line, {fmt(raw_per_msg)} B).")
w("")
for f_, cap in plots:
    w(f"![{cap}]({f_})\n")

w("## Rate steps\n")
w("| target msg/s | measured s | sent/s | stored/s | lag p50 | lag p99 | lag max | n | ingestor write-lag p99 | backlog at end | backlog growth/s | listener buffer mean/max | dropped frames | machine CPU | sustained |")
w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")
for s in step_stats:
    w(f"| {s['rate']:,} | {s['secs']:.0f} | {fmt(s['generated'])} | {fmt(s['stored'])} | {fmt(s['lag_p50'])} ms | {fmt(s['lag_p99'])} ms | "
      f"{fmt(s['lag_max'])} ms | {s['lag_n']}{' (+' + str(s['lag_late']) + ' late)' if s['lag_late'] else ''} | "
      f"{fmt(s['ingest_lag_p99'] and s['ingest_lag_p99'] * 1000)} ms | {fmt(s['backlog_end'])} | {fmt(s['backlog_slope'], 0)} | "
      f"{fmt(s['buffer_mean'])} / {fmt(s['buffer_max'])} | {s['dropped_frames']} | {fmt(s['machine_cpu'])}% | {'yes' if s['ok'] else 'no'}"
      + (f" ({s['aborted']})" if s["aborted"] else "") + " |")
w("\n`backlog` = records chat-listener has published and chat-ingestor has not yet written (Kafka consumer lag plus "
  "records in flight), from their counters every second. `ingestor write-lag` = chat-ingestor's own histogram, sent "
  "timestamp → row written, over every message of the step. `late` = probed messages first seen by the sweep after the "
  "run (counted with the sweep time: an upper bound).\n")

w("## CPU and RSS per process\n")
cols = [s for s in (realistic, sustained, first_bad) if s]
seen_ = set()
cols = [s for s in cols if not (s["rate"] in seen_ or seen_.add(s["rate"]))]
w("| process | " + " | ".join(f"CPU % at {s['rate']:,}" for s in cols) + " | " + " | ".join(f"RSS MB at {s['rate']:,}" for s in cols) + " |")
w("|---|" + "---:|" * (2 * len(cols)))
for p in PROCS + ["other"]:
    w(f"| {p} | " + " | ".join(fmt(s["cpu"].get(p), 0) for s in cols) + " | "
      + " | ".join(fmt(s["rss"].get(p), 0) if p != "other" else "" for s in cols) + " |")
w("| **machine** | " + " | ".join(f"**{fmt(s['machine_cpu'])}**" for s in cols) + " | " + " | ".join("" for _ in cols) + " |")
w(f"\n100% = one core; the machine has {NPROC * 100}%. twitch-sim and bench-driver (the sampler and the prober) are the "
  "load generator, not the pipeline. 'other' = CPU of the machine not in the listed processes.\n")
if cost:
    w("Core-seconds per 1,000 stored messages at " + f"{cost['rate']:,} msg/s: "
      + ", ".join(f"{p} {v:.3f}" for p, v in sorted(cost["per_process"].items(), key=lambda kv: -kv[1])) + ".\n")

w("## Bytes per message\n")
if kchat:
    w("| where | bytes | records | bytes/record |")
    w("|---|---:|---:|---:|")
    w(f"| Kafka `{kchat.get('topic')}` (Avro, lz4 batches, log segments on disk) | {kchat['bytes']:,} | {kchat['records']:,} | {fmt(kafka_per_msg)} |")
    if kmod:
        w(f"| Kafka `{kmod.get('topic')}` | {kmod['bytes']:,} | {kmod['records']:,} | {fmt(kafka_per_mod)} |")
    if chat_bytes is not None:
        w(f"| Cassandra, the chat tables (messages, bucket index, by-user index) together (flush + compact) | {chat_bytes:,.0f} | {fmt(n_chat)} | {fmt(cass_per_msg)} |")
    if mod_bytes is not None and written_mod:
        w(f"| Cassandra, moderation_events + deleted_messages | {mod_bytes:,.0f} | {fmt(written_mod)} | {fmt(mod_bytes / written_mod)} |")
    w(f"| the message JSON (what the original stored per message) | | | {fmt(json_per_msg)} |")
    if api_obj_sizes:
        w(f"| one message object as chat-api serves it (compact JSON) | | | {fmt(mean(api_obj_sizes))} |")
    w("")
if storage_md:
    w("Per chat table (`chat-ingestor` example `storage --keyspace`, after `nodetool flush` + `compact`, "
      f"{(meta.get('storage_example') or {}).get('secs', '?')} s):\n")
    w(storage_md.strip() + "\n")
elif meta.get("storage_example"):
    w(f"The storage step failed: `{(meta['storage_example'].get('stderr') or '')[-300:]}`\n")

if scale:
    w(f"## chat-listener at {scale['channels']:,} channels\n")
    w(f"A second twitch-sim with {scale['channels']:,} live channels and the verified-bot JOIN limit "
      f"(2,000 JOIN attempts per 10 s per login, refilled on a fixed schedule; attempts over it are ignored without an "
      f"answer, as Twitch does); streamer-listener and one chat-listener logged in as one bot account "
      f"(`TCI__IRC__NICK`, so all its connections share one limit).\n")
    w("| listener JOIN config | joined | JOINs ignored by the sim | connections | first JOIN → all joined |")
    w("|---|---:|---:|---:|---:|")
    for r in scale.get("runs", []):
        c = r["config"]
        w(f"| {c.get('TCI__IRC__JOINS_PER_WINDOW', '2000')} per {c.get('TCI__IRC__JOIN_WINDOW', '10s')} ({r['label']}) | "
          f"{r['joined']:,} / {scale['channels']:,} | {r['refused']:,} | {r['connections']} | "
          f"{fmt(r['secs_first_to_all'], 1, ' s') if r['secs_first_to_all'] else 'never (stalled)'} |")
    w("")
    if scale_stats:
        w("| state | chat-listener CPU % | RSS MB (max) | lines received/s | published/s | buffer max | frames dropped | twitch-sim CPU % |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in scale_stats:
            w(f"| {s['label'].replace('scale:', '')} | {fmt(s['cpu'], 1)} | {fmt(s['rss'], 1)} | {fmt(s['received'])} | "
              f"{fmt(s['published'])} | {fmt(s['buffer_max'])} | {s['dropped']} | {fmt(s['sim_cpu'], 1)} |")
        w("")
    n = scale["channels"]
    w("How long joining takes at Twitch's limits (N JOINs, at most L per 10 s window: ⌈N / L⌉ − 1 full windows after the first burst):\n")
    w("| channels | normal account (20 / 10 s) | verified bot (2,000 / 10 s) |")
    w("|---:|---:|---:|")

    def dur(s):
        return f"{s / 3600:.1f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s")

    for N in sorted({n, 10_000, 100_000}):
        w(f"| {N:,} | {dur((-(-N // 20) - 1) * 10)} | {dur((-(-N // 2000) - 1) * 10)} |")
    naive = next((r for r in scale.get("runs", []) if r["label"].startswith("verified")), None)
    w("\nchat-listener's limiter is a token bucket of `joins_per_window` refilled continuously over `join_window`: "
      "configured as 2,000 per 10 s it sends 2,000 JOINs at once and then 200 per second, i.e. up to 4,000 attempts in "
      "the first 10 s. Twitch counts attempts per window, so the second 2,000 are ignored"
      + (f" (here: {naive['refused']:,} ignored, {naive['joined']:,} of {scale['channels']:,} channels joined)" if naive else "")
      + "; chat-listener does not check that a JOIN was answered (JOIN echo / ROOMSTATE) and never retries, so those "
      "channels stay unarchived until the connection happens to reconnect. The paced configuration (a bucket of 1 "
      "refilled every 5.1 ms: at most 1,960 per 10 s) joins everything.\n")

w("## How it was measured\n")
w("- Sampling every second: `/proc/<pid>/stat` (utime+stime) and `/proc/<pid>/status` (VmRSS) for each service, "
  "twitch-sim, the Kafka / Cassandra / registry JVMs (pids from `.stack/run/*.pid`) and the driver; "
  "`/metrics` of chat-listener and chat-ingestor; `/sim/stats` of twitch-sim.")
w("- Consumer lag: chat-ingestor's `tci_chat_ingestor_consumer_lag_records` (librdkafka statistics every 5 s) and, every "
  "second, listener `published_total` minus ingestor `records_written_total` (the backlog in the tables above).")
w("- A step counts as sustained when its measured window is ≥ 60 s, lag p99 < 2 s, stored ≥ 97% of sent (ROOMSTATE "
  "lines and the sim's 0.1% duplicate deliveries are not stored), the backlog does not grow and no frame was dropped. "
  "Stepping stops at the first step where the pipeline falls behind without bound.")
w(f"- Probed channels: " + ", ".join(f"{c['login']} ({c['share'] * 100:.2f}%)" for c in meta.get("probe_channels", []))
  + f"; {meta.get('probe_requests', 0):,} API requests, {meta.get('probe_errors', 0)} errors.")
w(f"- Joining the {meta.get('channels')} pipeline channels took {meta.get('a_join_secs')} s; draining after the last step "
  f"{meta.get('drain_secs')} s.")
w("")

with open(os.path.join(OUT, "report.md"), "w") as f:
    f.write("\n".join(L) + "\n")

with open(os.path.join(OUT, "steps.csv"), "w", newline="") as f:
    cw = csv.writer(f)
    cw.writerow(["target", "secs", "sent_per_s", "stored_per_s", "lag_p50_ms", "lag_p99_ms", "lag_n", "backlog_end",
                 "backlog_slope", "buffer_mean", "dropped_frames", "machine_cpu"] + [f"cpu_{p}" for p in PROCS] + [f"rss_{p}" for p in PROCS] + ["sustained"])
    for s in step_stats:
        cw.writerow([s["rate"], s["secs"], s["generated"], s["stored"], s["lag_p50"], s["lag_p99"], s["lag_n"], s["backlog_end"],
                     s["backlog_slope"], s["buffer_mean"], s["dropped_frames"], s["machine_cpu"]]
                    + [s["cpu"].get(p) for p in PROCS] + [s["rss"].get(p) for p in PROCS] + [s["ok"]])

summary = {"sustained_rate": sustained and sustained["rate"], "sustained": sustained, "realistic": realistic,
           "first_failing": first_bad, "saturation": sat_text, "cost": cost, "kafka_bytes_per_msg": kafka_per_msg,
           "cassandra_bytes_per_msg": cass_per_msg, "json_bytes_per_msg": json_per_msg, "scale": scale_stats,
           "scale_runs": scale and scale.get("runs"), "meta": meta}
with open(os.path.join(OUT, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1, default=str)
print(f"wrote {OUT}/report.md")
