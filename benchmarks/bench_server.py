"""Load test of the translation service: a real ``vqnat serve`` (uvicorn) on 127.0.0.1, a real HTTP client.

    python benchmarks/bench_server.py                       # the default bundles (models/), model "nat"
    python benchmarks/bench_server.py --nat DIR --teacher DIR --model teacher --requests 2000

``--clients`` concurrent clients (httpx, async) send ``--requests`` requests of ``--min-sentences`` to
``--max-sentences`` English verses of John (a fixed random plan, ``--seed``) to one model, once with dynamic
batching on and once off (a model call per sentence), each run bounded by ``--max-seconds``. Before the timed
runs, every verse the plan uses is translated alone (one sentence per request, one request at a time): each answer
of the timed runs must equal its verse's alone answer. Reports per run: requests and sentences per second,
client-side p50/p90/p99 latency, errors by kind, requests lost (no answer) and answers that differ from the alone
answer; prints a table and writes results/bench_server.json. Goals: 0 errors, 0 lost, 0 different, and batching
on >= 3x the unbatched throughput.

The client runs on the same machine as the server: on a small box it takes CPU from the server, so the figures
are a lower bound on what the server alone can do. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import machine_record, write_json  # noqa: E402

logger = logging.getLogger("bench_server")
JOHN = 43
READY_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``vqnat serve`` in a subprocess on a free loopback port; a context manager that waits for /ready."""

    def __init__(self, args: argparse.Namespace, batching: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        batch = (["--max-batch-sentences", str(args.max_batch_sentences), "--max-wait-ms", str(args.max_wait_ms)]
                 if batching else ["--max-batch-sentences", "1", "--max-wait-ms", "0"])
        self.cmd = [sys.executable, "-c", "from vqnat_cli.main import main; main()", "serve", "--host", "127.0.0.1",
                    "--port", str(self.port), "--log-level", "warning", "--teacher-beam", str(args.teacher_beam),
                    # the plan's queue must fit: admission limits are not what this measures
                    "--max-queued-cost", str(10**12), "--request-timeout", "600", *batch]
        for flag, path in (("--nat", args.nat), ("--teacher", args.teacher), ("--data-dir", args.data_dir)):
            if path is not None:
                self.cmd += [flag, str(path)]
        if args.trust_checkpoint:
            self.cmd.append("--trust-checkpoint")
        if args.threads:
            self.cmd += ["--threads", str(args.threads)]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {READY_TIMEOUT_S} s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def make_plan(sentences: list[str], requests: int, low: int, high: int, seed: int) -> list[list[str]]:
    """``requests`` lists of ``low``..``high`` verses, drawn with a fixed seed."""
    rng = random.Random(seed)
    return [rng.sample(sentences, rng.randint(low, high)) for _ in range(requests)]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def translate_alone(base: str, model: str, sentences: list[str]) -> dict[str, str]:
    """Each sentence in its own request, one request at a time: the answer the sentence gets alone."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        alone = {}
        for text in sentences:
            response = await http.post("/v1/translate", json={"text": [text], "model": model})
            response.raise_for_status()
            alone[text] = response.json()["translations"][0]
    return alone


async def load(base: str, model: str, plan: list[list[str]], clients: int, alone: dict[str, str],
               max_seconds: float) -> dict:
    """Send the plan from ``clients`` concurrent clients (each takes the next request); stop starting new ones
    after ``max_seconds``. Latency is client-side, per request."""
    # drop idle connections before the server does (its keep-alive timeout is 5 s): a request sent on a
    # connection the server is closing at that moment fails with a ReadError
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    different = sent = sentences_done = 0
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        before = (await http.get("/metrics")).text
        jobs = iter(plan)  # one shared iterator: each client takes the next request
        start = time.perf_counter()
        deadline = start + max_seconds

        async def client() -> None:
            nonlocal different, sent, sentences_done
            for texts in jobs:
                if time.perf_counter() > deadline:
                    return
                sent += 1
                began = time.perf_counter()
                try:
                    response = await http.post("/v1/translate", json={"text": texts, "model": model})
                except httpx.HTTPError as err:
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    continue
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] = errors.get(f"HTTP {response.status_code}", 0) + 1
                    continue
                answers = response.json()["translations"]
                latencies.append(time.perf_counter() - began)
                sentences_done += len(texts)
                different += sum(a != alone[t] for a, t in zip(answers, texts, strict=True))

        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
        after = (await http.get("/metrics")).text
    name = f'vqnat_batch_size_sentences_count{{model="{model}"}}'
    translated = f'vqnat_sentences_translated_total{{model="{model}"}}'
    batches = _metric(after, name) - _metric(before, name)
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 1) if ordered else None

    return {"requests_planned": len(plan), "requests_sent": sent, "answered": len(latencies),
            "errors": sum(errors.values()), "error_kinds": errors,
            "lost": sent - len(latencies) - sum(errors.values()), "different_from_alone": different,
            "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 2),
            "sentences_per_s": round(sentences_done / wall, 2), "p50_ms": pct(0.50), "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "mean_batch": round((_metric(after, translated) - _metric(before, translated)) / batches, 2)
            if batches else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nat", type=Path, help="latent-transformer bundle or checkpoint (default: the default "
                        "bundle, with the default teacher, when neither --nat nor --teacher is given)")
    parser.add_argument("--teacher", type=Path, help="autoregressive bundle or checkpoint")
    parser.add_argument("--data-dir", type=Path, help="dictionaries of a .pt checkpoint, if not where it says")
    parser.add_argument("--trust-checkpoint", action="store_true", help="passed to vqnat serve (.pt checkpoints)")
    parser.add_argument("--model", choices=("nat", "teacher"), default="nat", help="the model the load goes to")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10_000, help="requests per run")
    parser.add_argument("--min-sentences", type=int, default=1)
    parser.add_argument("--max-sentences", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="per run: no new request after this")
    parser.add_argument("--max-batch-sentences", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--teacher-beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    parser.add_argument("--only", choices=("on", "off"), help="run batching on or off only")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_server.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would load the client
    if args.nat is None and args.teacher is None:
        from vqnat.checkpoint import default_model

        args.nat, args.teacher = default_model("nat"), default_model("teacher")

    from vqnat.data.bible import read_verse_pairs

    verses = sorted({pair.src for pair in read_verse_pairs(books=[JOHN])})
    plan = make_plan(verses, args.requests, args.min_sentences, args.max_sentences, args.seed)
    used = sorted({text for texts in plan for text in texts})
    rows, alone = [], None
    for batching in [b for b in (True, False) if args.only is None or args.only == ("on" if b else "off")]:
        with Server(args, batching) as server:
            if alone is None:
                logger.info("translating the %d verses of the plan alone", len(used))
                alone = asyncio.run(translate_alone(server.base, args.model, used))
            logger.info("%s, batching %s: %d clients x %d requests", args.model, "on" if batching else "off",
                        args.clients, args.requests)
            result = asyncio.run(load(server.base, args.model, plan, args.clients, alone, args.max_seconds))
            rows.append({"model": args.model, "batching": batching, "clients": args.clients, **result})
            logger.info("%s", rows[-1])

    print_table(rows)
    summary = summarize(rows)
    for line in summary["lines"]:
        print(line)
    write_json(args.out, {
        "benchmark": "bench_server", "machine": machine_record(),
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "models": {"nat": str(args.nat) if args.nat else None, "teacher": str(args.teacher) if args.teacher else None},
        "settings": {k: v for k, v in vars(args).items() if k not in ("nat", "teacher", "data_dir", "out")},
        "rows": rows, "summary": {k: v for k, v in summary.items() if k != "lines"},
    })
    print(f"wrote {args.out}")


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':<8}{'batching':>9}{'answered':>9}{'req/s':>8}{'sent/s':>8}{'p50 ms':>9}{'p90 ms':>9}"
              f"{'p99 ms':>9}{'errors':>7}{'lost':>5}{'differ':>7}{'batch':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<8}{'on' if r['batching'] else 'off':>9}{r['answered']:>9}{r['requests_per_s']:>8.1f}"
              f"{r['sentences_per_s']:>8.1f}{_num(r['p50_ms']):>9}{_num(r['p90_ms']):>9}{_num(r['p99_ms']):>9}"
              f"{r['errors']:>7}{r['lost']:>5}{r['different_from_alone']:>7}{_num(r['mean_batch']):>7}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summarize(rows: list[dict]) -> dict:
    by = {r["batching"]: r for r in rows}
    out: dict = {"lines": []}
    if True in by and False in by and by[False]["sentences_per_s"]:
        speedup = by[True]["sentences_per_s"] / by[False]["sentences_per_s"]
        out["batching_speedup"] = round(speedup, 2)
        out["lines"].append(f"batching gives {speedup:.1f}x the unbatched throughput (goal >= 3x)")
    for key in ("errors", "lost", "different_from_alone"):
        out[key] = sum(r[key] for r in rows)
        out["lines"].append(f"{key.replace('_', ' ')}: {out[key]} (goal 0)")
    out["complete"] = all(r["requests_sent"] == r["requests_planned"] for r in rows)
    if not out["complete"]:
        out["lines"].append("a run hit --max-seconds before sending its whole plan")
    return out


if __name__ == "__main__":
    main()
