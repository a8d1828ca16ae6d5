"""How many requests per second ``graft loadgen`` sends and receives on this machine, against
a stub v2 server that answers every infer at once (so the generator, not a model, is what
is measured).

    python bench/loadgen_bench.py [--rate 2500] [--duration 8]

The stub runs in a second process; on a 2-core machine the two share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time

BODY = (b'{"model_name":"tiny.p5","model_version":"1","outputs":[{"name":"OUTPUT__0",'
        b'"datatype":"FP32","shape":[1,10],"data":[0,0,0,0,0,0,0,0,0,0]}]}')


def _stub(port: int) -> None:
    from aiohttp import web

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    from graft.client import loadgen
    from graft.workload.flows import Flow

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2500.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--port", type=int, default=8799)
    args = ap.parse_args()
    stub = multiprocessing.get_context("spawn").Process(target=_stub, args=(args.port,),
                                                         daemon=True)
    stub.start()
    time.sleep(2.0)
    try:
        flow = Flow("stub", "tiny", 5, args.rate, 1000.0)
        schedule = loadgen.poisson_schedule([flow], args.duration, seed=0)
        report = asyncio.run(loadgen.run_open_loop(f"http://127.0.0.1:{args.port}", schedule))
    finally:
        stub.terminate()
    print(f"open loop at {args.rate:g} req/s for {args.duration:g} s against a stub server:")
    print(report.table())


if __name__ == "__main__":
    main()
