#!/usr/bin/env python3
"""Resources of a tool's own processes, for bench/peers.

    sample.py PEER_SH OUT_JSON        (ends on SIGTERM or SIGINT)

Every 0.5 s it asks `PEER_SH procs` for the tool's processes (host PIDs, refreshed every 2 s:
a failover starts and ends processes) and reads /proc/PID/stat (user and system CPU ticks) and
/proc/PID/status (VmRSS). At the end it writes one JSON object:

    {"peak_rss_kib": ..., "cpu_s": ..., "samples": ..., "processes": ["label", ...]}

peak_rss_kib is the largest sum of the processes' resident sizes seen in one sample; cpu_s is
the CPU time each process used between the first and the last time it was seen, summed (a
process killed with its container keeps what it used until its last sample)."""
import json, os, signal, subprocess, sys, time

peer, out = sys.argv[1], sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")
stop = False


def on_signal(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def procs():
    try:
        text = subprocess.run([peer, "procs"], capture_output=True, text=True, timeout=10).stdout
    except subprocess.TimeoutExpired:
        return {}
    found = {}
    for line in text.splitlines():
        pid, _, label = line.partition("\t")
        if pid.strip().isdigit():
            found[int(pid)] = label.strip()
    return found


def read(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return ticks, rss
    except (OSError, IndexError, ValueError):
        return None


first, last, labels = {}, {}, {}
peak, samples, known, refreshed = 0, 0, {}, 0.0
while not stop:
    now = time.monotonic()
    if now - refreshed >= 2.0:
        known = procs() or known
        refreshed = now
    total = 0
    for pid, label in known.items():
        r = read(pid)
        if r is None:
            continue
        ticks, rss = r
        first.setdefault(pid, ticks)
        last[pid] = ticks
        labels[pid] = label
        total += rss
    peak = max(peak, total)
    samples += 1
    time.sleep(0.5)

cpu = sum(last[p] - first[p] for p in last) / tick
with open(out, "w") as f:
    json.dump({"peak_rss_kib": peak, "cpu_s": round(cpu, 2), "samples": samples,
               "processes": sorted(set(labels.values()))}, f)
