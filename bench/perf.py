#!/usr/bin/env python3
"""stephost against its peers and the physical limit (issue #8), one run.

Run through bench/perf.sh, which builds what this needs and makes the Python
peer's venv. Prints Markdown tables (and writes target/perf/results.json):

  P1  per-step host overhead, trivial step (criterion bench step_overhead)
  P2  three appender steps: fused stephost vs http-chain (each step its own
      stephost process, chained by examples/chain_dispatcher.rs through
      channels, as the InMemoryChannel dispatcher does), concurrency 1/4/16/64;
      nginx answering the same request with a fixed 202 (Debian's nginx,
      one worker): the floor of one HTTP exchange on this machine; and
      stephost's bare answer (`--bare-answer`: the event answered with itself
      after admission and parsing, no step): the host's own floor. Server CPU
      per event is read from /proc for the fused host and both floors
  P3  filter -> sentiment: fused stephost vs python-peer (bench/python_peer.py:
      two uvicorn services on onnxruntime, the same dispatcher)
  P4  sentiment step through the host (wasi-nn -> tract) vs native tract, and
      the in-guest tract variant (criterion bench sentiment)
  P5  fused stephost vs native in-process (examples/native_pipeline.rs)
  P7  process start -> /readyz 200, warm and cold compile cache

Load: examples/loadgen.rs, closed loop (N keep-alive clients). Every figure
of a pair comes from the same run; at each concurrency level the systems
compared (fused and its baseline; for P2 also nginx and the bare answer, for
P3 also P5's native pipeline) take turns phase by phase, A B C A B C, so the
shared machine's drift falls on all of them alike; each reports its median
phase (by events/s).

Usage: python3 bench/perf.py [--smoke] [--only P2,P3,...] --venv-python PATH
  --smoke: 1 s phases, concurrency 1 and 4, no criterion, no cold start:
           keeps every script and server of the suite from rotting (CI).
  --only:  run only these measures (P1, P2, P3 (with P5), P4, P7); the
           summary then shows only their rows.

The summary table gives each measure with its target (issue #22's where it
sets one) and whether this run met it.
"""
import argparse
import glob
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RELEASE = os.path.join(ROOT, "target", "release")
STEPHOST = os.path.join(RELEASE, "stephost")
LOADGEN = os.path.join(RELEASE, "examples", "loadgen")
DISPATCHER = os.path.join(RELEASE, "examples", "chain_dispatcher")
NATIVE = os.path.join(RELEASE, "examples", "native_pipeline")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APPENDER = os.path.join(ROOT, "target", "guests", "wasm32-wasip2", "release", "appender.wasm")
PEER = os.path.join(ROOT, "bench", "python_peer.py")
OUT = os.path.join(ROOT, "target", "perf")

parser = argparse.ArgumentParser()
parser.add_argument("--smoke", action="store_true")
parser.add_argument("--venv-python", required=True, help="python with the peer's packages")
parser.add_argument("--only", default="P1,P2,P3,P4,P7",
                    help="comma-separated measures to run (P5 comes with P3)")
args = parser.parse_args()
ONLY = {m.strip().upper() for m in args.only.split(",")}
SMOKE = args.smoke
PHASE = 1.0 if SMOKE else 8.0
REPS = 1 if SMOKE else 3
LEVELS = [1, 4] if SMOKE else [1, 4, 16, 64]
os.makedirs(OUT, exist_ok=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except Exception:
        return None


class Server:
    """A process serving HTTP on a loopback port; its log kept for errors."""

    def __init__(self, name, cmd, port, ready_path="/readyz", env=None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(OUT, f"{name}.log"), "w+b")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env, cwd=ROOT)
        self.ready_path = ready_path

    def wait_ready(self, limit=300):
        deadline = time.monotonic() + limit
        while True:
            if self.ready_path is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    pass
            elif get(self.url + self.ready_path) == 200:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                sys.exit(f"{self.name} did not become ready:\n"
                         + self.log.read().decode(errors="replace")[-3000:])
            time.sleep(0.05)
        return time.monotonic() - self.started

    def peak_rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self):
        """User + system CPU the process used so far."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# The suite measures capacity with closed-loop clients, up to 64 at once. The
# default door runs CPUs + inference threads events at once and queues as
# many again, answering more with 429s, which is right for overload
# (bench/overload.sh measures that) but the peers here have no admission at
# all: every host in this suite queues like they do, running every event it
# holds (--max-running = --max-in-flight).
NO_RUNNING_LIMIT = ("--max-running", "256")


def stephost(name, manifest=None, extra=()):
    port = free_port()
    cmd = [STEPHOST, "serve", "--port", str(port), "--host", "127.0.0.1",
           *NO_RUNNING_LIMIT, *extra]
    if manifest is not None:
        path = os.path.join(OUT, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(manifest)
        cmd += ["--manifest", path]
    return Server(name, cmd, port)


def dispatcher(name, step_urls):
    port = free_port()
    cmd = [DISPATCHER, "--port", str(port)]
    for u in step_urls:
        cmd += ["--step", u]
    return Server(name, cmd, port, ready_path=None)


def nginx(name):
    """Debian's nginx, one worker, answering every POST with an empty 202:
    what one HTTP/1.1 exchange costs on this machine, nothing else."""
    port = free_port()
    prefix = os.path.join(OUT, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 202; }}
    }}
}}
""")
    return Server(name, [NGINX, "-p", prefix, "-c", conf], port, ready_path=None)


def post(url, content_type, data, ident):
    """One binary-mode CloudEvent; (status, lower-cased headers, body)."""
    request = urllib.request.Request(url + "/", data=data, method="POST", headers={
        "ce-specversion": "1.0", "ce-id": ident, "ce-source": "/perf",
        "ce-type": "new-review-comment", "content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def load(url, concurrency, seconds, content_type="application/json"):
    cmd = [LOADGEN, "--url", url + "/", "--concurrency", str(concurrency),
           "--seconds", str(seconds), "--content-type", content_type]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    failed = {k: v for k, v in r["statuses"].items() if not k.startswith("2")}
    if failed or r["accepted"] == 0:
        sys.exit(f"{url}: events failed under load (every event must be answered 2xx "
                 f"in a capacity run): {r['statuses']}")
    return r


class Target:
    """One system of a side-by-side measurement: a URL under closed-loop load
    (with `server`, its CPU per event is read from /proc), or the native
    in-process pipeline with `native_threads` workers."""

    def __init__(self, name, url=None, content_type="application/json", server=None,
                 native_threads=None):
        self.name, self.url, self.content_type = name, url, content_type
        self.server, self.native_threads = server, native_threads

    def warm_up(self, concurrency):
        if self.url:
            load(self.url, concurrency, min(PHASE, 2), self.content_type)

    def phase(self, concurrency):
        """One load phase of PHASE seconds; the loadgen's (or native's) JSON."""
        if self.native_threads:
            out = subprocess.run([NATIVE, "--threads", str(self.native_threads),
                                  "--seconds", str(PHASE)],
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out)
        cpu = self.server.cpu_seconds() if self.server else 0.0
        r = load(self.url, concurrency, PHASE, self.content_type)
        r["cpu_s"] = self.server.cpu_seconds() - cpu if self.server else 0.0
        return r


def measure_interleaved(targets, concurrency):
    """Every target at `concurrency`, REPS phases each, taken in turn (A B C,
    A B C, ...) so that the shared machine's drift from minute to minute falls
    on all of them alike; per target the median phase (by events/s), with its
    CPU per event over all its phases (µs) when it has a server."""
    for t in targets:
        t.warm_up(concurrency)
    runs = {t.name: [] for t in targets}
    for _ in range(REPS):
        for t in targets:
            runs[t.name].append(t.phase(concurrency))
    out = {}
    for t in targets:
        phases = runs[t.name]
        cpu_us = (sum(r["cpu_s"] for r in phases) * 1e6 / sum(r["accepted"] for r in phases)
                  if t.server else float("nan"))
        phases.sort(key=lambda r: r["accepted_per_s"])
        median = phases[len(phases) // 2]
        median["cpu_us_per_event"] = cpu_us
        out[t.name] = median
    return out


def compare(name, a, b, extra_at=lambda c: []):
    """Targets `a` and `b` (and `extra_at(c)`'s) at every concurrency level,
    interleaved phase by phase; ([(c, a, b)], {extra name: {c: median}})."""
    rows, extras = [], {}
    for c in LEVELS:
        extra = extra_at(c)
        got = measure_interleaved([a, b, *extra], c)
        rows.append((c, got[a.name], got[b.name]))
        for t in extra:
            extras.setdefault(t.name, {})[c] = got[t.name]
        print(f"  {name} c={c}: " + ", ".join(f"{k} {v['accepted_per_s']:.0f}"
                                               for k, v in got.items()), file=sys.stderr)
    return rows, extras


def appender_step(name, suffix):
    return (f"---\napiVersion: stephost.dev/v1alpha1\nkind: WasmStep\nmetadata:\n  name: {name}\n"
            f"spec:\n  component: {APPENDER}\n  config:\n    suffix: \"{suffix}\"\n")


def three_appenders():
    seq = ("apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: appenders\n"
           "spec:\n  steps:\n"
           + "".join(f"    - ref:\n        apiVersion: serving.knative.dev/v1\n"
                     f"        kind: Service\n        name: step-{i}\n" for i in range(3)))
    return seq + "".join(appender_step(f"step-{i}", f"-{i}") for i in range(3))


def criterion_medians(bench, group):
    """Run a criterion bench; {benchmark id: median seconds}."""
    subprocess.run(["cargo", "bench", "-p", "stephost", "--bench", bench],
                   check=True, cwd=ROOT, stdout=sys.stderr)
    out = {}
    for path in glob.glob(os.path.join(ROOT, "target", "criterion", group, "*", "new",
                                       "estimates.json")):
        with open(os.path.join(os.path.dirname(path), "benchmark.json")) as f:
            ident = json.load(f)["function_id"]
        with open(path) as f:
            out[ident] = json.load(f)["median"]["point_estimate"] / 1e9
    return out


results = {"smoke": SMOKE, "phase_s": PHASE, "reps": REPS, "levels": LEVELS}
started = time.time()

# ---- P1 and P4: criterion (in-process, no HTTP) --------------------------------
if not SMOKE and "P1" in ONLY:
    results["P1"] = criterion_medians("step_overhead", "step_overhead")
if not SMOKE and "P4" in ONLY:
    results["P4"] = criterion_medians("sentiment", "sentiment")

# ---- P2: three appenders, fused vs http-chain, and the two floors ---------------
def run_p2():
    servers = []
    try:
        fused = stephost("p2-fused", three_appenders())
        steps = [stephost(f"p2-step-{i}", appender_step(f"step-{i}", f"-{i}")) for i in range(3)]
        floor = nginx("p2-nginx")
        bare = stephost("p2-bare", three_appenders(), ["--bare-answer"])
        servers = [fused, *steps, floor, bare]
        for s in servers:
            s.wait_ready()
        chain = dispatcher("p2-dispatcher", [f"{s.url}/steps/step-{i}" for i, s in enumerate(steps)])
        servers.append(chain)
        chain.wait_ready()
        # Both must give the same answer before they are timed.
        for s in (fused, chain):
            status, _, body = post(s.url, "text/plain", b"hello", "p2")
            if status != 200 or body != b"hello-0-1-2":
                sys.exit(f"P2: {s.name} answered {status} {body!r}, want 200 'hello-0-1-2'")
        status, _, _ = post(floor.url, "text/plain", b"hello", "p2")
        if status != 202:
            sys.exit(f"P2: nginx answered {status}, want 202")
        status, _, body = post(bare.url, "text/plain", b"hello", "p2")
        if status != 200 or body != b"hello":
            sys.exit(f"P2: the bare answer was {status} {body!r}, want 200 'hello'")
        floors = [Target("P2-nginx", floor.url, "text/plain", floor),
                  Target("P2-bare", bare.url, "text/plain", bare)]
        rows, extras = compare("P2", Target("fused", fused.url, "text/plain", fused),
                               Target("http-chain", chain.url, "text/plain"),
                               lambda c: floors)
        results["P2"] = (rows, fused.peak_rss_mib(),
                         sum(s.peak_rss_mib() for s in steps + [chain]))
        results.update(extras)
    finally:
        for s in servers:
            s.stop()


if "P2" in ONLY:
    run_p2()

# ---- P3 + P5: filter -> sentiment, fused vs python-peer, vs native ---------------
def run_p3():
    servers = []
    try:
        fused = stephost("p3-fused")
        peer_ports = [free_port(), free_port()]
        peers = [Server(f"p3-peer-{k}", [args.venv_python, PEER, k, str(p)], p)
                 for k, p in zip(["filter", "sentiment"], peer_ports)]
        servers = [fused, *peers]
        for s in servers:
            s.wait_ready()
        chain = dispatcher("p3-dispatcher", [p.url + "/" for p in peers])
        servers.append(chain)
        chain.wait_ready()
        # The same verdicts from both before timing (one clean, one offensive review).
        for text, want in [("I absolutely loved this book", ("good", "positive")),
                           ("You are a fucking idiot and this book is shit", ("bad", "negative"))]:
            for s in (fused, chain):
                status, headers, body = post(s.url, "application/json",
                                             json.dumps({"reviewText": text}).encode(), "p3")
                for w, header in zip(want, ["ce-badwordfilter", "ce-sentimentresult"]):
                    if status != 200 or headers.get(header) != w:
                        sys.exit(f"P3: {s.name} on {text!r}: {status}, {header} = "
                                 f"{headers.get(header)!r}, want {w!r}: {body[:300]!r}")
        # P5's native pipeline is measured beside each level too (one thread
        # beside 1 client, for the latency row).
        native2 = Target("native-2", native_threads=2)
        native1 = Target("native-1", native_threads=1)
        rows, extras = compare("P3", Target("fused", fused.url, server=fused),
                               Target("python-peer", chain.url),
                               lambda c: [native2, native1] if c == LEVELS[0] else [native2])
        results["P3"] = (rows, fused.peak_rss_mib(),
                         sum(s.peak_rss_mib() for s in peers + [chain]))
        results["P5"] = extras
    finally:
        for s in servers:
            s.stop()


if "P3" in ONLY:
    run_p3()

# ---- P7: start -> /readyz ---------------------------------------------------------
def start_to_ready(extra):
    s = stephost("p7", extra=extra)
    try:
        return s.wait_ready()
    finally:
        s.stop()


if "P7" in ONLY:
    cache = os.path.join(OUT, "p7-cache")
    for d in (cache, cache + "-preinit"):  # the compile cache and the snapshots beside it
        shutil.rmtree(d, ignore_errors=True)
    results["P7"] = {}
    if not SMOKE:
        results["P7"]["cold"] = start_to_ready(["--cache-dir", cache])
    start_to_ready(["--cache-dir", cache])  # make sure the cache is warm
    warm = [start_to_ready(["--cache-dir", cache]) for _ in range(1 if SMOKE else 5)]
    results["P7"]["warm"] = statistics.median(warm)
    for d in (cache, cache + "-preinit"):
        shutil.rmtree(d, ignore_errors=True)

results["wall_s"] = time.time() - started
with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(results, f, indent=1)

# ---- the tables -------------------------------------------------------------------
def ms(x):
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def us(seconds):
    return f"{seconds * 1e6:.1f} µs"


def level_table(title, rows, rss_a, rss_b, a_name, b_name):
    print(f"\n{title}\n")
    print(f"| clients | {a_name} ev/s | {b_name} ev/s | ev/s ratio | {a_name} p50 / p99 "
          f"| {b_name} p50 / p99 | p50 ratio ({b_name} ÷ {a_name}) | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for c, a, b in rows:
        print(f"| {c} | {a['accepted_per_s']:.0f} | {b['accepted_per_s']:.0f} "
              f"| **{a['accepted_per_s'] / b['accepted_per_s']:.2f}×** "
              f"| {ms(a['p50_ms'])} / {ms(a['p99_ms'])} | {ms(b['p50_ms'])} / {ms(b['p99_ms'])} "
              f"| **{b['p50_ms'] / a['p50_ms']:.2f}×** | {b['p99_ms'] / a['p99_ms']:.2f}× |")
    print(f"\nPeak RSS (VmHWM, all server processes): {a_name} {rss_a:.0f} MiB, "
          f"{b_name} {rss_b:.0f} MiB ({rss_b / rss_a:.2f}×).")


def rev(version_cmd):
    try:
        return subprocess.run(version_cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


PEER_VERSIONS = ("import onnxruntime, tokenizers, uvicorn; print('onnxruntime', "
                 "onnxruntime.__version__, 'tokenizers', tokenizers.__version__, "
                 "'uvicorn', uvicorn.__version__)")
peer_versions = rev([args.venv_python, "-c", PEER_VERSIONS])
print(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
      f"{platform.machine()}; {rev(['rustc', '--version'])}; {peer_versions}; "
      f"load phases {PHASE:.0f} s × {REPS} (median), closed loop; wall {results['wall_s']:.0f} s"
      + (" — SMOKE RUN, figures meaningless" if SMOKE else ""))

def met(ok):
    return "**met**" if ok else "missed"


print("\n| measure | stephost | baseline | ratio | target | met |")
print("|---|---|---|---|---|---|")
if "P1" in results:
    d = results["P1"].get("dropper/pooling", float("nan"))
    print(f"| P1 trivial step (dropper), fresh instance per event | {us(d)} | target 20 µs "
          f"| {d / 20e-6:.2f}× of target | ≤ 20 µs | {met(d <= 20e-6)} |")
if "P2" in results:
    p2 = results["P2"]
    for c, a, b in p2[0]:
        r = a["accepted_per_s"] / b["accepted_per_s"]
        print(f"| P2 3 appenders, {c} clients: fused vs http-chain | {a['accepted_per_s']:.0f} ev/s "
              f"| http-chain {b['accepted_per_s']:.0f} ev/s | {r:.2f}× | ≥ 3× | {met(r >= 3)} |")
    for c, a, _ in p2[0]:
        n = results["P2-nginx"][c]
        r = a["accepted_per_s"] / n["accepted_per_s"]
        print(f"| P2 3 appenders, {c} clients: fused vs nginx's fixed 202 | {a['accepted_per_s']:.0f} ev/s "
              f"| nginx {n['accepted_per_s']:.0f} req/s | {r:.2f}× | ≥ 0.25× | {met(r >= 0.25)} |")
    for c in LEVELS:
        b, n = results["P2-bare"][c], results["P2-nginx"][c]
        r = b["accepted_per_s"] / n["accepted_per_s"]
        print(f"| P2 bare answer (no step), {c} clients: vs nginx's fixed 202 "
              f"| {b['accepted_per_s']:.0f} ev/s | nginx {n['accepted_per_s']:.0f} req/s "
              f"| {r:.2f}× | ≥ 0.5× | {met(r >= 0.5)} |")
if "P3" in results:
    p3 = results["P3"]
    for c, a, b in p3[0]:
        r = a["accepted_per_s"] / b["accepted_per_s"]
        ok = r >= 1.0 and a["p99_ms"] <= b["p99_ms"]
        print(f"| P3 filter → sentiment, {c} clients: ev/s, p99 | {a['accepted_per_s']:.0f} ev/s, "
              f"{ms(a['p99_ms'])} | python-peer {b['accepted_per_s']:.0f} ev/s, {ms(b['p99_ms'])} "
              f"| {r:.2f}× ev/s, p99 {a['p99_ms'] / b['p99_ms']:.2f}× | ≥ 1.0×, p99 ≤ | {met(ok)} |")
if "P4" in results:
    p4 = results["P4"]
    n = p4["native-tract-in-process"]
    h = p4["host-wasi-nn-fresh-instance"]
    g = p4["in-guest-tract-simd-warm-instance"]
    print(f"| P4 sentiment step via wasi-nn (fresh instance) | {ms(h * 1e3)} | native tract "
          f"{ms(n * 1e3)} | {h / n:.2f}× | ≤ 1.2× | {met(h / n <= 1.2)} |")
    print(f"| P4 in-guest tract, +simd128, warm instance | {ms(g * 1e3)} | native tract "
          f"{ms(n * 1e3)} | {g / n:.2f}× | reported | — |")
if "P5" in results:
    best = max(results["P3"][0], key=lambda r: r[1]["accepted_per_s"])
    nat = results["P5"]["native-2"][best[0]]  # measured beside that level
    r5 = best[1]["accepted_per_s"] / nat["accepted_per_s"]
    print(f"| P5 filter → sentiment, best ev/s ({best[0]} clients) | {best[1]['accepted_per_s']:.0f} ev/s "
          f"| native, 2 threads {nat['accepted_per_s']:.0f} ev/s | {r5:.2f}× | ≥ 0.9× | {met(r5 >= 0.9)} |")
    one, nat1 = results["P3"][0][0][1], results["P5"]["native-1"][LEVELS[0]]
    print(f"| P5 filter → sentiment, latency at 1 client (p50) | {ms(one['p50_ms'])} "
          f"| native, 1 thread {ms(nat1['p50_ms'])} | {one['p50_ms'] / nat1['p50_ms']:.2f}× | — | — |")
if "P7" in results:
    p7 = results["P7"]
    if "cold" in p7:
        print(f"| P7 start → /readyz, cold compile cache | {p7['cold']:.2f} s | warm {p7['warm']:.3f} s "
              f"| {p7['cold'] / p7['warm']:.1f}× | reported | — |")
    print(f"| P7 start → /readyz, warm compile cache (median) | {p7['warm']:.3f} s | — | — "
          f"| ≤ 0.5 s | {met(p7['warm'] <= 0.5)} |")

if "P2" in results:
    level_table("P2 — three appender steps: fused stephost vs http-chain (3 stephost step "
                "processes + channel dispatcher)", *results["P2"], "fused", "http-chain")
    print("\nP2 nginx (one worker, `return 202`), the floor of one HTTP exchange: "
          + ", ".join(f"{c} clients {n['accepted_per_s']:.0f} req/s (p50 {ms(n['p50_ms'])})"
                      for c, n in sorted(results["P2-nginx"].items())) + ".")
    print("\nP2 server CPU per event (µs, from /proc, over all phases of a level; the load "
          "generator runs on the same cores):\n")
    print("| clients | nginx | stephost bare answer | fused, 3 appenders |")
    print("|---|---|---|---|")
    for c, a, _ in results["P2"][0]:
        print(f"| {c} | {results['P2-nginx'][c]['cpu_us_per_event']:.1f} "
              f"| {results['P2-bare'][c]['cpu_us_per_event']:.1f} | {a['cpu_us_per_event']:.1f} |")
if "P3" in results:
    level_table("P3 — filter → sentiment: fused stephost vs python-peer (2 uvicorn services "
                "+ channel dispatcher)", *results["P3"], "fused", "python-peer")
if "P5" in results:
    nat1 = results["P5"]["native-1"][LEVELS[0]]
    print(f"\nP5 native in-process, measured beside each level of P3: 1 thread (beside "
          f"{LEVELS[0]} client) {nat1['accepted_per_s']:.0f} ev/s (p50 {ms(nat1['p50_ms'])}, "
          f"p99 {ms(nat1['p99_ms'])}); 2 threads "
          + ", ".join(f"beside {c} clients {n['accepted_per_s']:.0f} ev/s"
                      for c, n in sorted(results["P5"]["native-2"].items())) + ".")
if "P1" in results:
    print("\nP1 all variants (criterion medians): "
          + ", ".join(f"{k} {us(v)}" for k, v in sorted(results["P1"].items())))
