"""Training the atmosphere network on simulated scenes (``python -m component train``).

Each step draws patches of real surfaces (:mod:`component.training.surfaces`), simulates their
TOA reflectance under random atmospheres through the 6S table
(:mod:`component.training.simulate`), lets the network estimate AOT and water vapour from the
TOA and the geometry it is told, inverts the TOA with those estimates exactly as the component
does at run time (:mod:`component.training.torch_physics`) and compares the result with the true
surface. The loss is therefore on what users get, surface reflectance of all 12 bands (L1 plus a
spectral-angle term), plus a small term on the atmosphere itself where the geometry was known
(with unknown geometry only the *effective* atmosphere is defined).

No real L1C/L2A pair is used: the real pairs are for selection and for the held-out test
(``scripts/validate_holdout.py``), so neither is contaminated by training. Everything that
affects the result is seeded; checkpoints hold model, optimizer, scheduler and RNG states so
``--resume`` continues exactly. The output is a safetensors file and a copy of the model card
with its sha256 and a description of the training.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.errors import InvalidParameterError, ModelError
from component.model.atmosphere import Atmosphere, Terms
from component.model.card import ModelCard, load_card
from component.model.correction import cirrus_reflectance
from component.model.estimator import CONTEXT_CHANNELS, Context, network_input
from component.model.network import build_model, read_state_dict, save_weights
from component.training.simulate import Ranges, Sample, random_patch, simulate
from component.training.surfaces import Surface, load_surfaces
from component.training.torch_physics import batch_curves, gaussian_blur, invert

SIMULATED_ADJACENCY_M = 300.0
"""Scale of the adjacency effect in simulated TOA (Gaussian sigma, about Sen2Cor's 1 km range):
real L1C scenes have it whatever the inversion then does about it (the card's
``adjacency_sigma_m``, which the loss uses, may be 0)."""

BAND_WEIGHTS = {"B09": 0.3}
"""Loss weight per band (1 if absent): B09's Sen2Cor reference is the least reliable band."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m component train``."""
    parser.add_argument("--data-root", type=Path, default=None, help="folder with surfaces/")
    parser.add_argument(
        "--extra-root",
        type=Path,
        default=None,
        help="folder with the L1C-only scenes (scripts/fetch_training_inputs.sh)",
    )
    parser.add_argument("--card", type=Path, default=None, help="model card (bands, LUT)")
    parser.add_argument("--output", type=Path, required=True, help="output .safetensors file")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights")
    parser.add_argument("--encoder", default=None, help="override the card's encoder")
    parser.add_argument(
        "--decoder-channels", default=None, help="override the decoder widths, e.g. 128,64,32,16,8"
    )
    parser.add_argument(
        "--context-channels",
        default=None,
        help="context channels to append to the card's input, e.g. elevation_km,water_prior_cm"
        " (names of component.model.estimator.CONTEXT_CHANNELS)",
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--patch", type=int, default=64, help="patch size on the coarse grid")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sam-weight", type=float, default=0.1)
    parser.add_argument("--state-weight", type=float, default=0.05)
    parser.add_argument(
        "--adjacency-sigma-m",
        type=float,
        default=None,
        help="default: the card's atmosphere.adjacency_sigma_m",
    )
    parser.add_argument(
        "--smoothing-m", type=float, default=None, help="default: the card's atmosphere.smoothing_m"
    )
    parser.add_argument("--unknown-geometry", type=float, default=Ranges.unknown_geometry_fraction)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true")


def _data_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    return Path(__file__).resolve().parents[4] / "shared" / "data"


class Batches:
    """Simulated training batches (numpy -> torch), reproducible from the RNG."""

    def __init__(
        self,
        surfaces: list[Surface],
        atmosphere: Atmosphere,
        card: ModelCard,
        patch: int,
        adjacency_sigma_m: float,
        ranges: Ranges,
        inversion: Atmosphere,
        cirrus_table: Atmosphere,
    ) -> None:
        """*atmosphere* has all 13 bands (simulation), *inversion* the 12 L2A bands and
        *cirrus_table* B10 alone (the run-time cirrus estimate)."""
        self.surfaces, self.atmosphere, self.card = surfaces, atmosphere, card
        self.patch, self.adjacency_sigma_m, self.ranges = patch, adjacency_sigma_m, ranges
        self.inversion = inversion
        self.cirrus_table = cirrus_table

    def cirrus(self, s: Sample) -> np.ndarray:
        """The run-time cirrus estimate, here with the true atmosphere (the network's estimate
        at run time)."""
        terms = self.cirrus_table.terms(s.aot, s.water, s.geometry, elevation_m=s.elevation_m)
        clear = Terms(terms.path[0], terms.transmittance[0], terms.spherical_albedo[0])
        b = {name: s.toa[L1C_BANDS.index(name)] for name in ("B10", "B8A", "B11")}
        cirrus = cirrus_reflectance(b["B10"], b["B8A"], b["B11"], clear)
        return np.broadcast_to(cirrus, s.toa.shape[1:]).astype(np.float32)

    def __call__(self, n: int, rng: np.random.Generator) -> dict[str, object]:
        xs, toas, cirri, targets, aots, waters, known, curves = [], [], [], [], [], [], [], []
        for _ in range(n):
            surface, _resolution = random_patch(self.surfaces, self.patch, rng)
            s = simulate(
                surface,
                self.atmosphere,
                rng,
                self.card.atmosphere_grid_m,
                self.adjacency_sigma_m,
                self.ranges,
            )
            context = Context(s.told, s.elevation_m, s.water_prior_cm, s.aot_prior)
            xs.append(network_input(s.toa, L1C_BANDS, context, self.card))
            toas.append(s.toa[[L1C_BANDS.index(b) for b in L2A_BANDS]])
            cirri.append(self.cirrus(s))
            targets.append(s.surface)
            aots.append(s.aot)
            waters.append(s.water)
            known.append(s.told.known)
            curves.append(self.inversion.curves(s.told, elevation_m=s.elevation_m))
        target = np.stack(targets)
        toa = np.stack(toas)
        mask = np.isfinite(target).all(axis=1) & np.isfinite(toa).all(axis=1)
        return {
            "x": torch.from_numpy(np.stack(xs)),
            "toa": torch.from_numpy(np.nan_to_num(toa, nan=0.1)),
            "cirrus": torch.from_numpy(np.stack(cirri).astype(np.float32)),
            "target": torch.from_numpy(np.nan_to_num(target, nan=0.0)),
            "mask": torch.from_numpy(mask),
            "aot": torch.from_numpy(np.stack(aots)),
            "water": torch.from_numpy(np.stack(waters)),
            "known": torch.tensor(known),
            "curves": batch_curves(curves),
        }


def loss_terms(
    model: torch.nn.Module,
    batch: dict[str, object],
    card: ModelCard,
    adjacency_sigma_px: float,
    smoothing_px: float,
    sam_weight: float,
    state_weight: float,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss on one batch, and its parts for the log."""
    x = batch["x"].to(device)  # type: ignore[union-attr]
    out = model(x)
    outputs = card.network_outputs
    aot = out[:, outputs.index("aot550")]
    water = out[:, outputs.index("water_vapour")]
    if smoothing_px > 0:
        aot, water = gaussian_blur(torch.stack([aot, water], 1), smoothing_px).unbind(1)
    curves = {k: v.to(device) for k, v in batch["curves"].items()}  # type: ignore[union-attr]
    surface = invert(
        batch["toa"].to(device),  # type: ignore[union-attr]
        batch["cirrus"].to(device),  # type: ignore[union-attr]
        aot,
        water,
        curves,
        adjacency_sigma_px,
    )
    target = batch["target"].to(device)  # type: ignore[union-attr]
    mask = batch["mask"].to(device).unsqueeze(1).float()  # type: ignore[union-attr]
    weights = torch.tensor([BAND_WEIGHTS.get(b, 1.0) for b in L2A_BANDS], device=device).view(
        1, -1, 1, 1
    )
    count = mask.sum().clamp_min(1.0)
    l1 = ((surface - target).abs() * weights * mask).sum() / (count * weights.sum())
    dot = (surface * target).sum(1, keepdim=True)
    norm = surface.norm(dim=1, keepdim=True) * target.norm(dim=1, keepdim=True)
    cos = (dot / norm.clamp_min(1e-6)).clamp(-1 + 1e-6, 1 - 1e-6)
    sam = (torch.acos(cos) * mask).sum() / count
    known = batch["known"].to(device).float().view(-1, 1, 1)  # type: ignore[union-attr]
    true_aot = batch["aot"].to(device)  # type: ignore[union-attr]
    true_water = batch["water"].to(device)  # type: ignore[union-attr]
    state = (
        ((aot - true_aot).abs() / (true_aot + 0.1) + 0.1 * (water - true_water).abs()) * known
    ).mean()
    loss = l1 + sam_weight * sam + state_weight * state
    parts = {"l1": float(l1.detach()), "sam": float(sam.detach()), "state": float(state.detach())}
    return loss, parts


def _seed_all(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _schedule(total: int, warmup: int = 100):  # type: ignore[no-untyped-def]
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return float(0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, progress))))

    return factor


def _save_checkpoint(path: Path, step: int, model, opt, sched, rng, losses) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "losses": losses,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def resolved_card(args: argparse.Namespace) -> ModelCard:
    """The card to train for, with command-line overrides applied (encoder, atmosphere)."""
    card = load_card(args.card)
    raw = json.loads(json.dumps(card.raw))
    if args.encoder:
        raw["encoder"] = args.encoder
    if args.decoder_channels:
        raw["decoder_channels"] = [int(c) for c in args.decoder_channels.split(",")]
    if args.context_channels:
        entry = raw["mlm:input"][0]
        names = [b["name"] if isinstance(b, dict) else str(b) for b in entry["bands"]]
        for name in args.context_channels.split(","):
            if name not in CONTEXT_CHANNELS:
                raise InvalidParameterError(
                    f"unknown context channel {name!r}; choose from {', '.join(CONTEXT_CHANNELS)}"
                )
            if name not in names:
                entry["bands"].append({"name": name})
                names.append(name)
        entry.setdefault("input", {}).setdefault("shape", [-1, 0, -1, -1])[1] = len(names)
    atmosphere = raw.setdefault("atmosphere", {})
    if args.adjacency_sigma_m is not None:
        atmosphere["adjacency_sigma_m"] = args.adjacency_sigma_m
    if args.smoothing_m is not None:
        atmosphere["smoothing_m"] = args.smoothing_m
    from component.model.card import card_from_dict

    return card_from_dict(raw, card.card_path)


def widened(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """*state* for *model*, whose first layer may take more input channels (context channels
    added to the card after the channels *state* was trained on): the new channels' weights
    start at zero, so the widened network computes exactly what *state* did."""
    own = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        target = own.get(key)
        if (
            target is not None
            and value.dim() == 4
            and target.dim() == 4
            and value.shape[1] < target.shape[1]
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            extra = target.shape[1] - value.shape[1]
            out[key] = torch.cat(
                [value, value.new_zeros(value.shape[0], extra, *value.shape[2:])], 1
            )
    return out


def train_loop(
    args: argparse.Namespace, card: ModelCard, batches: Batches
) -> tuple[torch.nn.Module, dict[str, object]]:
    """Train; returns the model and a summary of the run."""
    from tqdm import tqdm

    if not card.network_outputs:
        raise ModelError(
            "the card declares no atmosphere outputs (mlm:output aot550, water_vapour)"
        )
    rng = _seed_all(args.seed)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(card)
    if args.init is not None:
        model.unet.load_state_dict(widened(read_state_dict(args.init, None), model.unet))
    model.to(device).train()
    if args.steps <= 0:
        raise InvalidParameterError("nothing to do: --steps must be positive")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(args.steps))
    losses: list[float] = []
    start = 0
    checkpoint = args.checkpoint_dir / "last.pt" if args.checkpoint_dir else None
    if args.resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        losses, start = list(state["losses"]), int(state["step"])
    adjacency_px = card.adjacency_sigma_m / card.atmosphere_grid_m
    smoothing_px = card.smoothing_m / card.atmosphere_grid_m
    started = time.time()
    bar = tqdm(
        range(start, args.steps),
        initial=start,
        total=args.steps,
        disable=args.no_progress,
        desc="train",
        unit="step",
    )
    parts: dict[str, float] = {}
    for step in bar:
        batch = batches(args.batch, rng)
        loss, parts = loss_terms(
            model,
            batch,
            card,
            adjacency_px,
            smoothing_px,
            args.sam_weight,
            args.state_weight,
            device,
        )
        if not torch.isfinite(loss):
            raise ModelError(f"training diverged at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", l1=f"{parts['l1']:.4f}")
        if args.no_progress and (step + 1) % 50 == 0:
            print(
                f"step {step + 1}/{args.steps} loss {np.mean(losses[-50:]):.4f} "
                f"l1 {parts['l1']:.4f} sam {parts['sam']:.4f} state {parts['state']:.3f} "
                f"{time.time() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if checkpoint is not None and (step + 1) % args.checkpoint_every == 0:
            _save_checkpoint(checkpoint, step + 1, model, opt, sched, rng, losses)
    summary: dict[str, object] = {
        "steps": args.steps,
        "patch_size": args.patch,
        "batch_size": args.batch,
        "learning_rate": args.lr,
        "sam_weight": args.sam_weight,
        "state_weight": args.state_weight,
        "unknown_geometry_fraction": args.unknown_geometry,
        "seed": args.seed,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "wall_time_s": round(time.time() - started, 1),
        "loss_first_50_mean": float(np.mean(losses[:50])) if losses else None,
        "loss_last_50_mean": float(np.mean(losses[-50:])) if losses else None,
        "last_parts": parts,
    }
    return model.eval(), summary


def write_outputs(
    args: argparse.Namespace,
    card: ModelCard,
    model: torch.nn.Module,
    summary: dict[str, object],
    surfaces: list[Surface],
) -> Path:
    """Weights + a card next to them carrying their sha256 and the training description."""
    sha = save_weights(model, args.output)
    data = json.loads(json.dumps(card.raw))
    data["weights"] = {"file": args.output.name, "sha256": sha, "format": "safetensors"}
    data["encoder"] = card.encoder
    data["decoder_channels"] = list(card.decoder_channels)
    data["mlm:total_parameters"] = int(sum(p.numel() for p in model.parameters()))
    data["mlm:framework_version"] = torch.__version__
    data["training"] = {
        **summary,
        "surfaces": sorted({s.name for s in surfaces}),
        "init": args.init.name if args.init else None,
    }
    card_out = args.output.with_suffix(".card.json")
    card_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card_out


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m component train``."""
    card = resolved_card(args)
    if card.lut_path is None:
        raise ModelError("the card names no atmosphere table")
    atmosphere = Atmosphere.load(card.lut_path, card.lut_sha256)
    root = _data_root(args.data_root)
    if not (root / "surfaces").is_dir():
        raise InvalidParameterError(f"no surfaces/ folder under {root}; pass --data-root")
    surfaces = load_surfaces(root, args.extra_root, float(card.atmosphere_grid_m))
    ranges = Ranges(unknown_geometry_fraction=args.unknown_geometry)
    inversion = Atmosphere.load(card.lut_path, card.lut_sha256, L2A_BANDS)
    cirrus_table = Atmosphere.load(card.lut_path, card.lut_sha256, ("B10",))
    batches = Batches(
        surfaces,
        atmosphere,
        card,
        args.patch,
        SIMULATED_ADJACENCY_M,
        ranges,
        inversion,
        cirrus_table,
    )
    model, summary = train_loop(args, card, batches)
    card_out = write_outputs(args, card, model, summary, surfaces)
    print(json.dumps({"weights": str(args.output), "card": str(card_out), **summary}, default=str))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="python -m component.training.train", description=__doc__
    )
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
