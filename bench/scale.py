"""Scale bench: the API and live updates with many runs and many metric points, on PostgreSQL + Redis.

    DATABASE_URL=postgres://duda:duda@127.0.0.1:5432/duda_bench REDIS_URL=redis://127.0.0.1:6379/2 \\
    DJANGO_SECRET_KEY=bench DUDA_INSECURE_HTTP=1 \\
        python bench/scale.py --runs 10000 --points 10000000 --out bench/results/scale.json

**It empties the runs tables of the database DATABASE_URL names** (give it a database of its own),
then seeds ``--runs`` runs of one user and ``--points`` metric points: ``--big-runs`` runs of
``--big-points`` points each (four curves a step, an evaluation every 1,000 steps), the rest spread
over the other runs. Points are written with PostgreSQL's COPY (a bulk insert: the same rows and
indexes the services write, not their per-batch transactions), then each run's curve blocks are
computed from them (``curves.rebuild_blocks``: the rows ``store_points`` keeps up as it stores).

Then it starts ``manage.py serve`` (daphne) on a free port and measures, with warm repeated requests
over one keep-alive connection sending ``Accept-Encoding: gzip`` (p50 / p95 in ms, bytes on the wire):

- the runs list: page 1, filtered (status + method), and at an offset of 90 % of the runs;
- the curves of a ``--big-points`` run as the run page asks for them (``width=1200``), and every
  point of it through the pages (``since=``), as a client that wants them all;
- the compare of the ``--big-runs`` big runs (mIoU and one loss, ``width=1200``), and the runs list's
  and a run's curves' p95 while one client loops that compare (against the same measured idle);
- live delivery: ``--live-runs`` runs, each reported by a publisher process of its own (as each run
  has its worker) through the worker's own callbacks (``RunCallbacks.on_metrics``: points buffered
  and stored at most ten times a second by ``records.metrics_record``, which publishes them after
  commit), ``--rate`` times a second with four points, for ``--live-seconds``. In a deployment workers
  run on machines of their own; sharing this CPU, the publishers run at ``--publisher-nice`` so
  that they yield to the server, PostgreSQL and Redis. One browser-like websocket client per run
  (autobahn) keeps the page's rule: a hole in the messages' numbers is filled from REST by step
  range. Reported: for the points that came over the socket, publish -> client latency (from the
  moment ``metrics_record`` returned, its rows committed and its message handed to ``live.publish``,
  to the client's receipt) and report -> client latency (from the ``on_metrics`` call: the worker's
  buffering and its database write included); the ``on_metrics`` call's own time, holes found,
  points filled, and points missing at the end (expected minus received or filled).

Writes one JSON file with every figure, the load average around each phase and the EXPLAIN plans of
the three main queries; beside it ``<out>.seed.json`` (what ``--skip-seed`` reads: the runs' ids and
the bench user's API token, not for committing) and ``<out>.server.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import http.client
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

NAMES = ("loss/source", "loss/target", "loss/distill", "lr")
EVAL_EVERY = 1000
WIDTH = 1200


def django_setup() -> None:
    import django

    django.setup()


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def a_config() -> dict:
    from webapp.runs.launch_schema import LaunchSpec
    from webapp.runs.services.launch import build_engine_config

    spec = LaunchSpec(benchmark="toy_gta2real", method="duda", student="mit_b0", auxiliary="mit_b2", iterations=40000,
                      crop_size=[64, 64], batch_size=2, num_workers=0)
    return build_engine_config(spec).config


def seed(args) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from webapp.runs import curves
    from webapp.runs.class_lists import classes_digest

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE runs_metricpoint, runs_curveblock, runs_classiou, runs_checkpoint, runs_predictionsample, "
                       "runs_runevent, runs_run_teachers, runs_run RESTART IDENTITY CASCADE")
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    config = json.dumps(a_config())
    methods = ("source_only", "self_training", "duda", "oracle")
    statuses = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "running", "queued")
    targets = ("cityscapes", "acdc", "darkzurich", "bdd100k")
    big = list(range(1, args.big_runs + 1))
    live = list(range(args.big_runs + 1, args.big_runs + 1 + args.live_runs))
    rest_points = max(0, args.points - args.big_runs * args.big_points)
    small_runs = args.runs - args.big_runs - args.live_runs
    per_small = rest_points // max(1, small_runs)
    digest = classes_digest(json.loads(config))
    buffer = io.StringIO()
    for i in range(1, args.runs + 1):
        status = "queued" if i in live else "succeeded" if i in big else statuses[i % len(statuses)]
        buffer.write("\t".join([
            str(i), str(user.pk), f"run {i}", methods[i % len(methods)], "toy_gta2real", "gta5", targets[i % len(targets)],
            "mit_b0", "mit_b2", config.replace("\\", "\\\\"), f"/tmp/bench-runs/{i}", status, "f", "400000", "0",
            "0", "", "", "", "", str(50.0 + i % 20), str(49.0 + i % 20), f"2026-01-01 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00",
            f"2026-01-01 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00", "t", digest,
        ]) + "\n")
    columns = ("id, owner_id, name, method, benchmark, source_dataset, target_dataset, student, auxiliary, config, "
               "output_dir, status, cancel_requested, total_steps, step, attempts, claim_token, worker_host, "
               "worker_gpu, error_message, best_miou, final_miou, created_at, updated_at, baseline_auto, classes_digest")
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY runs_run ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        cursor.execute("SELECT setval(pg_get_serial_sequence('runs_run', 'id'), %s)", [args.runs])
    runs_seconds = time.monotonic() - started

    def curve_rows(run_id: int, count: int):
        steps = max(1, count // len(NAMES))
        for step in range(1, steps + 1):
            for k, name in enumerate(NAMES):
                yield (run_id, step, name, (3.0 + k) / (1 + step / 500) + ((step * 7919 + k) % 97) / 970)
            if step % EVAL_EVERY == 0:
                yield (run_id, step, "eval/miou", 30 + 20 * step / steps)

    started = time.monotonic()
    written = 0
    with connection.cursor() as cursor, cursor.copy("COPY runs_metricpoint (run_id, step, name, value) FROM STDIN") as copy:
        for run_id in big:
            for row in curve_rows(run_id, args.big_points):
                copy.write_row(row)
                written += 1
        for run_id in range(args.big_runs + args.live_runs + 1, args.runs + 1):
            for row in curve_rows(run_id, per_small):
                copy.write_row(row)
                written += 1
    points_seconds = time.monotonic() - started
    started = time.monotonic()
    for run_id in [*big, *range(args.big_runs + args.live_runs + 1, args.runs + 1)]:
        curves.rebuild_blocks(run_id)  # the blocks store_points keeps, computed once for the bulk load
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum keeps a database that was not just bulk-loaded
    return {"runs": args.runs, "points": written, "big_runs": big, "live_runs": live,
            "seed_runs_s": round(runs_seconds, 1), "seed_points_s": round(points_seconds, 1),
            "seed_blocks_s": round(time.monotonic() - started, 1),
            "token": token.key, "user_id": user.pk}


def explain(seeded: dict) -> dict:
    from django.db import connection

    big = seeded["big_runs"][0]
    queries = {
        "metrics page (since)": ("SELECT step, name, value FROM runs_metricpoint WHERE run_id = %s AND step > %s "
                                 "ORDER BY step, name LIMIT 50001", [big, 25000]),
        "runs list page 1": ("SELECT id FROM runs_run WHERE owner_id = %s ORDER BY created_at DESC, id DESC LIMIT 100",
                             [seeded["user_id"]]),
        "runs list filtered": ("SELECT id FROM runs_run WHERE owner_id = %s AND status = 'succeeded' "
                               "ORDER BY created_at DESC, id DESC LIMIT 100", [seeded["user_id"]]),
        "runs list page ids, offset 9000": ("SELECT id FROM runs_run WHERE owner_id = %s "
                                            "ORDER BY created_at DESC, id DESC LIMIT 100 OFFSET 9000", [seeded["user_id"]]),
        "curve blocks of one curve": ("SELECT low_step, low_value, high_step, high_value, count FROM runs_curveblock "
                                      "WHERE run_id = %s AND name = 'loss/source' AND steps = 16", [big]),
    }
    plans = {}
    with connection.cursor() as cursor:
        for name, (sql, params) in queries.items():
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plans[name] = [row[0] for row in cursor.fetchall()]
    return plans


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection with the API token, asking for gzip like a browser."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, int, dict]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers={"Authorization": f"Token {self.token}", "Accept-Encoding": "gzip"})
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - started
        assert response.status == 200, (path, response.status, body[:300])
        data = gzip.decompress(body) if response.getheader("Content-Encoding") == "gzip" else body
        return took, len(body), json.loads(data)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1), "n": len(ordered)}


def measure(client: Client, path: str, reps: int, warm: int = 2) -> dict:
    for _ in range(warm):
        client.get(path)
    times, size = [], 0
    for _ in range(reps):
        took, size, _ = client.get(path)
        times.append(took)
    return {"path": path, **percentiles(times), "bytes": size}


def every_point(client: Client, run_id: int) -> dict:
    started = time.perf_counter()
    since, pages, points, wire = None, 0, 0, 0
    while True:
        _, size, page = client.get(f"/api/runs/{run_id}/metrics/" + (f"?since={since}" if since is not None else ""))
        pages += 1
        wire += size
        points += sum(len(s["step"]) for s in page["series"].values())
        if page["next"] is None:
            break
        since = page["next"]
    return {"points": points, "pages": pages, "bytes": wire, "seconds": round(time.perf_counter() - started, 2)}


def start_server(port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=REPO, env=env,
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start; see {log}")


def server_rss_mb(process: subprocess.Popen) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def loop_requests(port: int, token: str, path: str, stop, served) -> None:
    """Ask for ``path`` again and again until ``stop`` is set (the answers are read, not parsed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        conn.request("GET", path, headers={"Authorization": f"Token {token}", "Accept-Encoding": "gzip"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
        with served.get_lock():
            served.value += 1


def api_figures(args, seeded: dict, port: int) -> dict:
    client = Client(port, seeded["token"])
    big = seeded["big_runs"]
    offset = int(args.runs * 0.9)
    light = {
        "runs list page 1": "/api/runs/",
        "runs list filtered": "/api/runs/?status=succeeded&method=duda",
        f"runs list offset {offset}": f"/api/runs/?offset={offset}",
        "run curves (width 1200)": f"/api/runs/{big[0]}/metrics/?width={WIDTH}",
    }
    out = {name: measure(client, path, args.reps) for name, path in light.items()}
    # The same curves computed afresh each time: a width of its own per request misses the server's
    # cache of finished runs' curves (what the first visit to a run page costs).
    fresh = [measure(client, f"/api/runs/{big[0]}/metrics/?width={WIDTH - 1 - i}", 1, warm=0) for i in range(args.reps)]
    out["run curves, first request (uncached)"] = {"path": f"/api/runs/{big[0]}/metrics/?width={WIDTH}-(1..{args.reps})",
                                                   **percentiles([f["p50_ms"] / 1000 for f in fresh]),
                                                   "bytes": fresh[0]["bytes"]}
    out["run curves, every point (pages)"] = every_point(client, big[0])
    ids = ",".join(map(str, big))
    compare_path = f"/api/runs/compare/?ids={ids}&names=eval/miou,loss/source&width={WIDTH}"
    out["compare of the big runs"] = measure(client, compare_path, max(5, args.reps // 3))

    # The light endpoints again while another client, a process of its own (its reading of the answers
    # does not take this process's time), loops the compare.
    stop = multiprocessing.Event()
    loops = multiprocessing.Value("i", 0)
    looping = multiprocessing.Process(target=loop_requests, args=(port, seeded["token"], compare_path, stop, loops))
    looping.start()
    time.sleep(1)
    under = {name: measure(client, path, args.reps, warm=0) for name, path in light.items()
             if name in ("runs list page 1", "run curves (width 1200)")}
    stop.set()
    looping.join(timeout=60)
    out["while compare loops"] = {name: {**figures, "p95_vs_idle": round(figures["p95_ms"] / out[name]["p95_ms"], 2)}
                                  for name, figures in under.items()}
    out["while compare loops"]["compares served"] = loops.value
    return out


# --------------------------------------------------------------------------------------------
# Live
# --------------------------------------------------------------------------------------------


def publish_main(args) -> None:
    """The publishers (``publish`` subcommand): each run reports through a worker's own callbacks
    (``workers.callbacks.RunCallbacks.on_metrics``, which buffers points and stores them at most ten
    times a second through ``records.metrics_record``), one thread per run."""
    django_setup()
    from django.db import connections

    from webapp.runs.models import CurveBlock, MetricPoint, Run
    from webapp.runs.services import worker
    from workers.callbacks import RunCallbacks

    run_ids = [int(i) for i in args.run_ids.split(",")]
    MetricPoint.objects.filter(run_id__in=run_ids).delete()  # a second measurement starts them again
    CurveBlock.objects.filter(run_id__in=run_ids).delete()
    Run.objects.filter(pk__in=run_ids).update(status="queued", claim_token="", step=0, attempts=0, finished_at=None)
    claims = {run_id: worker.run_claim(run_id=run_id, worker_host="bench", worker_gpu="CPU").token for run_id in run_ids}
    reports = int(args.rate * args.live_seconds)
    print("ready", flush=True)
    sys.stdin.readline()  # the clients are connected
    call_seconds: list[float] = []  # each report's on_metrics call (a store and commit when it flushes)
    published: dict[int, dict[int, float]] = {run_id: {} for run_id in run_ids}  # run -> step -> when published

    def publish(run_id: int) -> None:
        callbacks = RunCallbacks(run_id, claims[run_id])
        callbacks.on_start(total_steps=reports, start_step=0)
        period = 1.0 / args.rate
        start = time.monotonic()
        unpublished: list[int] = []
        for step in range(1, reports + 1):
            now = time.time()  # each point's value: when it was reported
            before = callbacks.published
            callbacks.on_metrics(step, {name: now for name in NAMES})
            done = time.time()
            call_seconds.append(done - now)
            unpublished.append(step)
            if callbacks.published != before:  # stored, committed and handed to live.publish: now
                published[run_id].update(dict.fromkeys(unpublished, done))
                unpublished = []
            delay = start + step * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        callbacks.flush(force=True)
        published[run_id].update(dict.fromkeys(unpublished, time.time()))
        worker.run_finish(run_id=run_id, token=claims[run_id], steps=reports, final_miou=None, best_miou=None,
                          cancelled=False)
        connections.close_all()

    threads = [threading.Thread(target=publish, args=(run_id,)) for run_id in run_ids]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    from webapp.runs import live

    live.flush(10)
    print(json.dumps({"publish_seconds": round(time.monotonic() - started, 2), "reports": reports,
                      "call_ms": [round(x * 1000, 2) for x in call_seconds], "published": published}), flush=True)


class BrowserLike:
    """One run's page, as far as its curves go: the socket's points, and holes filled from REST."""

    def __init__(self, run_id: int, port: int, token: str):
        self.run_id, self.port, self.token = run_id, port, token
        self.points: dict[tuple[int, str], float] = {}
        self.latencies: list[float] = []
        self.arrivals: dict[int, float] = {}  # step -> when its first point came over the socket
        self.last_seq: dict[str, int] = {}
        self.last_step = -1
        self.holes = 0
        self.filled = 0
        self.messages = 0
        self.done = asyncio.Event()

    def on_message(self, message: dict) -> None:
        self.messages += 1
        arrived = time.time()
        seq, epoch = message.get("seq"), message.get("epoch")
        if isinstance(seq, int) and epoch:
            first = message.get("first_seq", seq)
            last = self.last_seq.get(epoch)
            self.last_seq[epoch] = max(last or 0, seq)
            if last is not None and first > last + 1:
                self.holes += 1
                asyncio.get_running_loop().create_task(self.fill(max(0, self.last_step), message.get("first_step")))
        for point in message.get("points") or []:
            key = (point["step"], point["name"])
            if key not in self.points:
                self.points[key] = point["value"]
                self.latencies.append(arrived - point["value"])
                self.arrivals.setdefault(point["step"], arrived)
            self.last_step = max(self.last_step, point["step"])
        if message.get("type") == "status" and message.get("status") == "succeeded":
            self.done.set()

    async def fill(self, start: int, end: int | None) -> None:
        def fetch() -> dict:
            client = Client(self.port, self.token)
            merged: dict[tuple[int, str], float] = {}
            since = None
            while True:
                query = f"start={start}" + (f"&end={end}" if end is not None else "") + (f"&since={since}" if since else "")
                _, _, page = client.get(f"/api/runs/{self.run_id}/metrics/?{query}")
                for name, column in page["series"].items():
                    merged.update({(s, name): v for s, v in zip(column["step"], column["value"], strict=True)})
                if page["next"] is None:
                    return merged
                since = page["next"]

        for key, value in (await asyncio.to_thread(fetch)).items():
            if key not in self.points:
                self.points[key] = value
                self.filled += 1


async def live_clients(args) -> dict:
    """The clients (``clients`` subcommand, a process without Django: autobahn on asyncio)."""
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    port = args.port
    pages = [BrowserLike(int(run_id), port, args.token) for run_id in args.run_ids.split(",")]
    connected = []
    loop = asyncio.get_running_loop()

    for page in pages:
        class Protocol(WebSocketClientProtocol):
            owner = page

            def onOpen(self):  # noqa: N802 - autobahn's names
                connected.append(self.owner.run_id)

            def onMessage(self, payload, is_binary):  # noqa: N802
                self.owner.on_message(json.loads(payload))

        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws/runs/{page.run_id}/", origin=f"http://127.0.0.1:{port}",
                                         headers={"Cookie": f"sessionid={args.cookie}"})
        factory.protocol = Protocol
        await loop.create_connection(factory, "127.0.0.1", port)
    while len(connected) < len(pages):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    # Each run ends with its "succeeded" status message; one lost on the way must not hang the bench.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(page.done.wait() for page in pages)), timeout=args.live_seconds * 6 + 60)
    await asyncio.sleep(1.0)  # fills in flight
    reports = int(args.rate * args.live_seconds)
    expected = {(step, name) for step in range(1, reports + 1) for name in NAMES}
    missing = sum(len(expected - set(page.points)) for page in pages)
    latencies = [x for page in pages for x in page.latencies]
    return {"runs": len(pages), "reports_per_s": args.rate, "seconds": args.live_seconds,
            "points_expected": len(expected) * len(pages), "points_missing": missing,
            "messages_received": sum(p.messages for p in pages),
            "holes_found": sum(p.holes for p in pages), "points_filled_from_rest": sum(p.filled for p in pages),
            "runs_without_their_final_status": sum(not p.done.is_set() for p in pages),
            "latency_from_report": percentiles(latencies) if latencies else None,
            "arrivals": {page.run_id: page.arrivals for page in pages}}


def live_figures(args, seeded: dict, port: int) -> dict:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(pk=seeded["user_id"])
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    run_ids = ",".join(map(str, seeded["live_runs"]))
    timing = ["--rate", str(args.rate), "--live-seconds", str(args.live_seconds)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ids = seeded["live_runs"]
    processes = args.publishers or len(ids)
    shares = [ids[k::processes] for k in range(processes)]
    publishers = [subprocess.Popen(["nice", "-n", str(args.publisher_nice), sys.executable, __file__, "publish", "--run-ids", ",".join(map(str, share)), *timing],
                                   cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                  for share in shares if share]
    for publisher in publishers:
        assert publisher.stdout.readline().strip() == b"ready"
    clients = subprocess.Popen([sys.executable, __file__, "clients", "--run-ids", run_ids, *timing, "--port", str(port),
                                "--token", seeded["token"], "--cookie", session.session_key],
                               cwd=REPO, stdout=subprocess.PIPE, env=env)
    assert clients.stdout.readline().strip() == b"ready"
    for publisher in publishers:
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
    figures = json.loads(clients.stdout.readline())
    took = [json.loads(publisher.stdout.readline()) for publisher in publishers]
    arrivals = figures.pop("arrivals")
    published = {run: times for t in took for run, times in t["published"].items()}
    delays = [arrived - published[run][step] for run, steps in arrivals.items() for step, arrived in steps.items()]
    figures |= {"latency_from_publish": percentiles(delays), "publisher_processes": len(publishers),
                "publish_seconds": max(t["publish_seconds"] for t in took), "reports": took[0]["reports"],
                "on_metrics_call": percentiles([ms / 1000 for t in took for ms in t["call_ms"]])}
    for publisher in publishers:
        publisher.wait(timeout=60)
    clients.wait(timeout=60)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="all", choices=["all", "publish", "clients"])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--big-runs", type=int, default=12)
    parser.add_argument("--big-points", type=int, default=200_000)
    parser.add_argument("--live-runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="reports a second per live run")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--publishers", type=int, default=0,
                        help="processes the live runs' publishers share (0: one per run, as workers are)")
    parser.add_argument("--publisher-nice", type=int, default=10,
                        help="the publishers' niceness: workers run on machines of their own, so on a shared CPU "
                             "they yield to the server, PostgreSQL and Redis (0: same priority)")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--skip-seed", action="store_true", help="measure the database as a previous run left it")
    parser.add_argument("--skip-api", action="store_true", help="measure live delivery only")
    parser.add_argument("--skip-live", action="store_true", help="measure the API only")
    parser.add_argument("--run-ids", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="")
    parser.add_argument("--cookie", default="")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    if args.command == "publish":
        publish_main(args)
        return
    if args.command == "clients":
        print(json.dumps(asyncio.run(live_clients(args))), flush=True)
        return
    django_setup()

    if args.skip_seed:
        seeded = json.loads(args.out.with_suffix(".seed.json").read_text())
    else:
        seeded = seed(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".seed.json").write_text(json.dumps(seeded))
    print("seeded:", {k: v for k, v in seeded.items() if k not in ("token", "big_runs", "live_runs")}, flush=True)
    results = {"command": " ".join(sys.argv), "seeded": {k: v for k, v in seeded.items() if k != "token"},
               "explain": explain(seeded)}
    results["load_average"] = {"before": os.getloadavg()}  # the machine's other work: read the figures with it
    port = free_port()
    server = start_server(port, args.out.with_suffix(".server.log"))
    try:
        if not args.skip_api:
            results["api"] = api_figures(args, seeded, port)
            print(json.dumps(results["api"], indent=1), flush=True)
            results["server_rss_mb_after_api"] = server_rss_mb(server)
            results["load_average"]["after_api"] = os.getloadavg()
            args.out.write_text(json.dumps(results, indent=1) + "\n")  # kept if the live part fails
        if not args.skip_live:
            results["live"] = live_figures(args, seeded, port)
            print(json.dumps(results["live"], indent=1), flush=True)
            results["server_rss_mb_after_live"] = server_rss_mb(server)
            results["load_average"]["after_live"] = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("written", args.out)


if __name__ == "__main__":
    main()
