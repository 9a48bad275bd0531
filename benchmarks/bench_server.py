"""Load test of the translation service: a real ``vqnat serve`` (uvicorn) on 127.0.0.1, a real HTTP client.

    python benchmarks/bench_server.py --nat NAT.pt --teacher TEACHER.pt [--data-dir DIR]
    python benchmarks/bench_server.py --tiny          # trains tiny models first: a smoke test, not a result

``--clients`` concurrent clients (httpx, async) send ``--requests`` single-sentence requests (English verses of
John) to one model, with dynamic batching on (``--max-batch-sentences``, ``--max-wait-ms``) and off (a model call
per sentence), for the NAT model and the teacher. Each run starts with ``--warmup`` untimed requests. Reports
throughput (sentences/s), client-side p50/p99 latency, errors and the server's mean batch size; prints a table and
writes results/bench_server.json. A first run serves an instant "echo" model behind the same app: the ceiling the
HTTP stack and client allow on this machine, whatever the model. Goals (issue 4): batching >= 4x the unbatched
throughput at 32 clients with zero errors; the NAT model's p50 below the teacher's at equal load.

The client runs on the same machine as the server: on a small box it takes CPU from the server, so the figures
are a lower bound on what the server alone can do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``vqnat serve`` in a subprocess on a free loopback port; a context manager that waits for /ready."""

    def __init__(self, args: argparse.Namespace, nat: Path | None, teacher: Path | None, batching: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = None
        self.proc: subprocess.Popen | None = None
        if nat is None:  # the echo server: HTTP stack only
            self.cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-echo", str(self.port)]
            return
        batch = ["--max-batch-sentences", str(args.max_batch_sentences), "--max-wait-ms", str(args.max_wait_ms)]
        self.cmd = [sys.executable, "-c", "from cli.main import main; main()", "serve", "--nat", str(nat),
                    "--port", str(self.port), "--log-level", "warning",
                    *(batch if batching else ["--max-batch-sentences", "1", "--max-wait-ms", "0"])]
        if teacher is not None:
            self.cmd += ["--teacher", str(teacher), "--teacher-beam", str(args.teacher_beam)]
        if args.data_dir is not None:
            self.cmd += ["--data-dir", str(args.data_dir)]
        if args.threads:
            self.cmd += ["--threads", str(args.threads)]

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
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
        raise RuntimeError("server not ready after 180 s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class EchoTranslator:
    """An instant stand-in for a model (upper-cases): serving it measures the HTTP stack alone, the ceiling."""

    kind = "nat"
    checkpoint = "echo"

    def __init__(self) -> None:
        from vqnat.inference import DecodingOptions, WhitespaceTokenizer

        self.tokenizer, self.options = WhitespaceTokenizer(), DecodingOptions()

    def translate(self, texts: list[str], batch_size: int = 64) -> list[str]:
        return [text.upper() for text in texts]

    def describe(self) -> dict[str, object]:
        return {"kind": "nat", "checkpoint": "echo", "architecture": "echo", "parameters": 0, "beam": None,
                "max_source_positions": 0, "device": "cpu"}


def serve_echo(port: int) -> None:
    """``--serve-echo PORT``: the real app and uvicorn around :class:`EchoTranslator` (batching on)."""
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    settings = Settings(nat=Path("echo"), port=port)
    uvicorn.run(create_app(settings, {"nat": EchoTranslator()}), host="127.0.0.1", port=port, log_level="warning")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def load(base: str, model: str, sentences: list[str], clients: int, requests: int, warmup: int) -> dict:
    """``requests`` single-sentence POSTs from ``clients`` concurrent clients, after ``warmup`` untimed ones."""
    # drop idle connections before uvicorn does (its keep-alive timeout is 5 s, httpx's default expiry too): a
    # request sent on a connection the server is closing at that moment fails with a ReadError
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        latencies: list[float] = []
        errors: dict[str, int] = {}  # kind -> count

        async def client(jobs) -> None:
            for i in jobs:
                start = time.perf_counter()
                try:
                    response = await http.post("/v1/translate",
                                               json={"text": [sentences[i % len(sentences)]], "model": model})
                    ok = response.status_code == 200 and len(response.json()["translations"]) == 1
                    kind = f"HTTP {response.status_code}"
                except httpx.HTTPError as err:
                    ok, kind = False, type(err).__name__
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[kind] = errors.get(kind, 0) + 1

        warm = iter(range(warmup))
        await asyncio.gather(*(client(warm) for _ in range(clients)))
        latencies.clear()
        errors.clear()
        before = (await http.get("/metrics")).text
        jobs = iter(range(warmup, warmup + requests))  # one shared iterator: each client takes the next request
        start = time.perf_counter()
        await asyncio.gather(*(client(jobs) for _ in range(clients)))
        wall = time.perf_counter() - start
        after = (await http.get("/metrics")).text
    batches = (_metric(after, f'vqnat_batch_size_sentences_count{{model="{model}"}}')
               - _metric(before, f'vqnat_batch_size_sentences_count{{model="{model}"}}'))
    translated = (_metric(after, f'vqnat_sentences_translated_total{{model="{model}"}}')
                  - _metric(before, f'vqnat_sentences_translated_total{{model="{model}"}}'))
    ordered = sorted(latencies)
    return {
        "requests": requests, "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
        "seconds": round(wall, 3),
        "sentences_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1e3, 2) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, 2) if ordered else None,
        "mean_batch": round(translated / batches, 2) if batches else None,
    }


def tiny_checkpoints(work: Path) -> tuple[Path, Path]:
    from tests.fixtures_fairseq import train_tiny_checkpoints

    logger.info("training tiny NAT and teacher models in %s (smoke test only)", work)
    trained = train_tiny_checkpoints(work)
    assert trained.teacher is not None
    return trained.nat, trained.teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nat", type=Path, help="latent-transformer checkpoint")
    parser.add_argument("--teacher", type=Path, help="autoregressive checkpoint (optional)")
    parser.add_argument("--data-dir", type=Path, help="dictionaries folder, if not where the checkpoint says")
    parser.add_argument("--tiny", action="store_true", help="train tiny models first (smoke test, not a result)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=64, help="untimed requests per run")
    parser.add_argument("--max-batch-sentences", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--teacher-beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    parser.add_argument("--no-unbatched-teacher", action="store_true",
                        help="skip the slowest run (teacher, batching off)")
    parser.add_argument("--no-echo", action="store_true",
                        help="skip the HTTP-ceiling run (an instant echo model behind the same app)")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_server.json")
    args = parser.parse_args()
    if args.serve_echo is not None:
        serve_echo(args.serve_echo)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would load the client

    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        if args.tiny:
            args.nat, args.teacher = tiny_checkpoints(Path(tmp))
        if args.nat is None:
            parser.error("give --nat CKPT (and --teacher CKPT), or --tiny")
        from vqnat.data.bible import read_verse_pairs

        sentences = [pair.src for pair in read_verse_pairs(books=[JOHN])]
        models = ["nat"] + (["teacher"] if args.teacher is not None else [])
        rows = []
        if not args.no_echo:
            with Server(args, None, None, True) as server:
                logger.info("echo (HTTP ceiling): %d clients x %d requests", args.clients, args.requests)
                result = asyncio.run(load(server.base, "nat", sentences, args.clients, args.requests, args.warmup))
                rows.append({"model": "echo", "batching": True, "clients": args.clients, **result})
        for batching in (True, False):
            with Server(args, args.nat, args.teacher, batching) as server:
                for model in models:
                    if model == "teacher" and not batching and args.no_unbatched_teacher:
                        continue
                    logger.info("%s, batching %s: %d clients x %d requests", model, "on" if batching else "off",
                                args.clients, args.requests)
                    result = asyncio.run(load(server.base, model, sentences, args.clients, args.requests,
                                              args.warmup))
                    rows.append({"model": model, "batching": batching, "clients": args.clients, **result})

    print_table(rows)
    summary = summarize(rows)
    for line in summary["lines"]:
        print(line)
    write_json(args.out, {
        "benchmark": "bench_server", "machine": machine_record(), "tiny_models": args.tiny,
        "note": "tiny models trained for a few updates: a smoke test of the harness, not the real result"
                if args.tiny else "",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "checkpoints": {"nat": None if args.tiny else str(args.nat),
                        "teacher": None if args.tiny or args.teacher is None else str(args.teacher)},
        "settings": {"clients": args.clients, "requests": args.requests, "warmup": args.warmup,
                     "max_batch_sentences": args.max_batch_sentences, "max_wait_ms": args.max_wait_ms,
                     "teacher_beam": args.teacher_beam, "threads": args.threads},
        "rows": rows, "summary": {k: v for k, v in summary.items() if k != "lines"},
    })
    print(f"wrote {args.out}")


def print_table(rows: list[dict]) -> None:
    header = f"{'model':<8}{'batching':>9}{'clients':>8}{'requests':>9}{'sent/s':>9}{'p50 ms':>9}{'p99 ms':>9}" \
             f"{'errors':>7}{'mean batch':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<8}{'on' if r['batching'] else 'off':>9}{r['clients']:>8}{r['requests']:>9}"
              f"{r['sentences_per_s']:>9.1f}{_num(r['p50_ms']):>9}{_num(r['p99_ms']):>9}{r['errors']:>7}"
              f"{_num(r['mean_batch']):>11}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summarize(rows: list[dict]) -> dict:
    by = {(r["model"], r["batching"]): r for r in rows}
    out: dict = {"lines": []}
    for model in ("nat", "teacher"):
        on, off = by.get((model, True)), by.get((model, False))
        if on and off and off["sentences_per_s"]:
            speedup = on["sentences_per_s"] / off["sentences_per_s"]
            out[f"{model}_batching_speedup"] = round(speedup, 2)
            out["lines"].append(f"{model}: batching gives {speedup:.1f}x the unbatched throughput (goal >= 4x)")
    if ("nat", True) in by and ("teacher", True) in by:
        nat, teacher = by[("nat", True)]["p50_ms"], by[("teacher", True)]["p50_ms"]
        if nat and teacher:
            out["teacher_over_nat_p50"] = round(teacher / nat, 2)
            out["lines"].append(f"p50 at equal load, batching on: NAT {nat:.1f} ms vs teacher {teacher:.1f} ms "
                                f"({teacher / nat:.1f}x)")
    if ("echo", True) in by:
        out["http_ceiling_sentences_per_s"] = by[("echo", True)]["sentences_per_s"]
        out["lines"].append(f"HTTP ceiling (instant echo model, same app and client): "
                            f"{out['http_ceiling_sentences_per_s']:.0f} sentences/s")
    out["errors"] = sum(r["errors"] for r in rows)
    out["lines"].append(f"errors: {out['errors']}")
    return out


if __name__ == "__main__":
    main()
