"""``edgediff serve``: run the edge service (docs/service.md); defaults are ``ServiceConfig``'s."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_model_config,
    add_policy_options,
    cache_policy,
    check_model_config,
    check_worker_devices,
    defaults,
    load_model,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    profile,
)
from edgediff.cli._generation import add_dtype
from edgediff.cli._serve_options import add_connection_options, add_profile_option, serve_options_flags
from edgediff.service.config import ServiceConfig, service_options, service_pai_curve

PAGES = "/ (status page), /docs (API), /v1/info, /metrics, /healthz"


def add_parsers(sub) -> None:
    from edgediff.offload.policies import REGISTRY

    d = defaults(ServiceConfig)
    p = sub.add_parser("serve", help="run the edge service (HTTP API, OpenAPI schema at /docs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=number(int, 0), default=8000, help="TCP port (0: any free one)")
    p.add_argument(
        "--model",
        default=d["model"],
        help="the cluster-wide model: a built-in one, a pipeline directory or a .safetensors file",
    )
    add_model_config(p)
    p.add_argument(
        "--config", type=Path, help="a config file (JSON or .toml; docs/service.md): flags given override it"
    )
    p.add_argument("--window", type=positive_float, default=d["window_s"], help="decision window K in seconds")
    p.add_argument(
        "--policy",
        default=d["policy"],
        help=f"offloading policy: {', '.join(REGISTRY)} (edgediff solve --help says what each does)",
    )
    add_policy_options(p)
    p.add_argument("--gpus", type=positive_int, default=d["gpus"], help="edge GPUs G")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=d["workers"],
        help="denoiser replicas, one per GPU (cuda:0..G-1) or CPU process; G is then the workers alive",
    )
    p.add_argument("--worker-threads", type=positive_int, default=d["worker_threads"], help="each CPU worker's threads")
    add_dtype(p, "the edge model's dtype (float16/bfloat16 as on a GPU; calibrate with the same)")
    p.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        help="run the edge engine in its own process, apart from the HTTP server (faster under load; "
        "default: on, except with --ray)",
    )
    p.add_argument("--bmax", type=non_negative_int, default=d["b_max"], help="max granted users per window B_max")
    p.add_argument(
        "--max-batch", type=positive_int, help="most members in the running batch, windows together (default: no cap)"
    )
    p.add_argument(
        "--cache-gb", type=number(float, 0.0), default=d["cache_gb"], help="latent cache capacity in GB (0: off)"
    )
    p.add_argument(
        "--cache-policy",
        type=cache_policy,
        default=d["cache_eviction"],
        help="what the latent cache evicts first: lru, lfu or lcbfu (docs/service.md)",
    )
    p.add_argument(
        "--pai",
        type=Path,
        help="the PAI curve: measure-pai's pai.json or {a, b, N} (default: the tiny models' measured curve "
        "for a built-in tiny model, else the paper's fit)",
    )
    p.add_argument("--queue", type=positive_int, default=d["queue_limit"], help="queued requests before 503")
    add_profile_option(p, d)
    p.add_argument(
        "--edge-profile",
        type=profile,
        help="the edge's k,h in s per step, or a calibrate profile JSON file (default: calibrated at start-up)",
    )
    p.add_argument(
        "--journal",
        type=Path,
        help="write-ahead journal (JSON lines): on restart every request accepted before is answered by id",
    )
    p.add_argument(
        "--journal-fsync",
        action=argparse.BooleanOptionalAction,
        default=d["journal_fsync"],
        help="force each acceptance to disk before its 202 (off: survives a crash, not a power loss)",
    )
    p.add_argument("--api-keys", type=Path, help="'TENANT KEY [rps=R] [concurrent=N]' lines, '@operator KEY'")
    p.add_argument(
        "--share-cache",
        action="store_true",
        help="with --api-keys: one latent cache for all tenants (faster; lets a tenant learn others' prompts)",
    )
    add_connection_options(p, d)
    p.add_argument("--device", default=d["device"], help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="deploy --sites sites on the Ray cluster at ADDRESS (host:port or auto) behind this front door",
    )
    p.add_argument("--sites", type=positive_int, default=1, help="with --ray: sites to deploy (site0, site1, ...)")
    p.add_argument(
        "--health-interval",
        type=positive_float,
        default=1.0,
        help="with --ray: seconds between health polls of each site (a dead site is out of routing after one)",
    )
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.offload.policies import policy_spec
    from edgediff.service.journal import check_journal
    from edgediff.service.server import bind
    from edgediff.service.tenants import load_keys_file

    policy_spec(args.policy)  # UnknownPolicy: exit 2 before any work
    check_model_config(args.model_config, args.model)
    # everything that can be refused is refused before the model loads (each one line, exit 2)
    if args.journal is not None:
        check_journal(args.journal)
    keys = {} if args.api_keys is None else load_keys_file(args.api_keys).options()
    if args.share_cache and not keys:
        raise UsageError("--share-cache needs --api-keys")
    if args.ray is None and (args.sites != 1 or args.health_interval != 1.0):
        raise UsageError("--sites and --health-interval need --ray ADDRESS")
    if args.ray is not None and args.engine_process:  # only when asked for: its default is off there
        raise UsageError("--engine-process does not apply with --ray (each site already runs in its own process)")
    if args.ray is not None and args.journal is not None:
        raise UsageError("--journal is not supported with --ray (each site would need its own file)")
    pai = service_pai_curve(args.pai, args.model)
    flags = dict(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        window_s=args.window,
        policy=args.policy,
        policy_options=dict(args.policy_options),
        gpus=args.gpus,
        workers=args.workers,
        worker_threads=args.worker_threads,
        engine_process=args.ray is None if args.engine_process is None else args.engine_process,
        b_max=args.bmax,
        max_batch=args.max_batch,
        cache_gb=args.cache_gb,
        cache_eviction=args.cache_policy,
        pai_a=pai.a,
        pai_b=pai.b,
        queue_limit=args.queue,
        edge_profile=args.edge_profile,
        journal=args.journal,
        journal_fsync=args.journal_fsync,
        **keys,
        cache_sharing=args.share_cache,
        **serve_options_flags(args),
    )
    config = ServiceConfig(**service_options(args.config, flags))
    if args.ray is None and config.workers > 1:  # not enough GPUs: one line before the model loads
        check_worker_devices(args.device, config.workers)
    sock = bind(args.host, args.port)  # a taken port: one line before the model loads
    if args.ray is not None:
        return _run_front_door(args, config, sock)
    if config.engine_process:
        return _run_engine_process(args, config, sock)
    model = load_model(args.model, args.device, args.model_config, config.dtype)
    embedder = None
    if config.cache_bytes > 0:  # load the prompt embedder now: a missing package is one line, not a traceback
        from edgediff.service.embedding import load_prompt_embedder

        embedder = load_prompt_embedder()
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import serve

    # when ready, the engine logs its model, edge profile L(b) (calibrated unless --edge-profile) and policy
    logging.getLogger("edgediff.service").setLevel(logging.INFO)
    print(f"edgediff serve: {_url(args, sock)} once ready: {PAGES}", file=sys.stderr)
    serve(EdgeEngine(config, model=model, embedder=embedder), args.host, args.port, sock=sock)


def _run_engine_process(args, config: ServiceConfig, sock) -> None:
    """``--engine-process``: the model loads in the engine process; this one serves HTTP."""
    from functools import partial

    from edgediff.service.engine_process import EngineProcess, serve_engine_process

    logging.getLogger("edgediff.service").setLevel(logging.INFO)
    print(f"edgediff serve: {_url(args, sock)} once ready: {PAGES}", file=sys.stderr)
    serve_engine_process(
        EngineProcess(config, partial(load_model, args.model, args.device, args.model_config, config.dtype)), sock
    )


def _url(args, sock) -> str:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    return f"http://{host}:{sock.getsockname()[1]}"


def _run_front_door(args, config: ServiceConfig, sock) -> None:
    """``--ray``: the sites load on the cluster; this process is the front door."""
    from edgediff.service.cluster import FrontDoor, serve_front, sites_from

    front = FrontDoor(config, sites_from(config, args.sites), args.ray, health_s=args.health_interval)
    logging.getLogger("edgediff.service").setLevel(logging.INFO)
    ready = f"front door {_url(args, sock)} for {args.sites} site(s) on Ray at {args.ray} once ready"
    print(f"edgediff serve: {ready}", file=sys.stderr)
    serve_front(front, sock)
