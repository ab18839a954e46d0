"""``edgediff check-model``: does a device's model share the cluster-wide model's latent space?"""

from __future__ import annotations

from edgediff.cli._args import add_model_config, check_model_config, load_model


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "check-model",
        help="check that a device's personalized model can finish the cluster-wide model's latents",
        description="Loads both models and compares their latent space (family, latent channels and size, VAE "
        "factor, scaling and shift, training noise schedule) and VAE weights. Exit 0 when the device's model "
        "can continue the edge's latents, 1 when not "
        "(docs/serve-your-model.md).",
    )
    p.add_argument("--model", required=True, help="the device's model: a name, a pipeline directory or a file")
    p.add_argument("--cluster", required=True, help="the edge's cluster-wide model, as given to serve --model")
    add_model_config(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.runtime.single_file import latent_space, latent_space_mismatches

    check_model_config(args.model_config, args.model, args.cluster)
    device = load_model(args.model, config=args.model_config)
    cluster = load_model(args.cluster, config=args.model_config)
    spaces = latent_space(device), latent_space(cluster)
    print(f"{'':<20} {'device':>18} {'cluster':>18}")
    for name in spaces[0]:
        print(f"{name:<20} {spaces[0][name]!s:>18} {spaces[1][name]!s:>18}")
    mismatches = latent_space_mismatches(device, cluster)
    if mismatches:
        print(f"incompatible: {args.model} cannot finish {args.cluster}'s latents ({'; '.join(mismatches)})")
        raise SystemExit(1)
    same_vae = spaces[0]["vae_sha256"] == spaces[1]["vae_sha256"]
    print(
        "compatible: same latent space"
        + ("" if same_vae else "; the VAEs differ, so the device decodes with its own VAE (check the images)")
    )
