"""``edgediff check-model``: does a device's model share the cluster-wide model's latent space?"""

from __future__ import annotations

from edgediff.cli._args import add_model_config, check_model_config, load_model
from edgediff.cli._lora import add_lora


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "check-model",
        help="check that a device's personalized model can finish the cluster-wide model's latents",
        description="Loads both models and compares their latent space (family, latent channels and size, VAE "
        "factor, scaling and shift, training noise schedule) and VAE weights. Exit 0 when the device's model "
        "can continue the edge's latents, 1 when not (docs/serve-your-model.md). A LoRA file as --model is "
        "described (what it adapts) and checked on the cluster-wide model.",
    )
    p.add_argument(
        "--model", required=True, help="the device's model: a name, a pipeline directory, a file or a LoRA file"
    )
    p.add_argument("--cluster", required=True, help="the edge's cluster-wide model, as given to serve --model")
    add_model_config(p)
    add_lora(p)
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.runtime.lora import LoraWeights, read_lora
    from edgediff.runtime.single_file import latent_space, latent_space_mismatches

    check_model_config(args.model_config, args.model, args.cluster)
    base, loras = args.model, list(args.lora)
    if read_lora(args.model) is not None:  # a personalization of the cluster-wide model, not a model
        base, loras = args.cluster, [LoraWeights(args.model), *loras]
    for lora in loras:
        print(f"{lora.path}: {read_lora(lora.path).describe()}")  # type: ignore[union-attr]
    if base != args.model:
        print(f"{args.model} needs a base model: checked on --cluster {args.cluster} with the LoRA loaded")
    device = load_model(base, config=args.model_config, loras=loras)
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
