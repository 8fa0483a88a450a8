"""Training: physics-simulated pre-training, then fine-tuning on real L1C/L2A pairs.

One run has up to two stages: ``--physics-steps`` on TOA simulated (:mod:`component.training.physics`)
from real surfaces under random atmospheres, then ``--real-steps`` on real pairs (optionally
mixed with simulated patches so the real chips, which are few, do not erase what the physics
taught). The loss is masked (nodata never contributes): L1 on reflectance plus a spectral-angle
term, because both the level and the spectral shape of the surface matter downstream.

Everything that affects the result is seeded; checkpoints hold model, optimizer, scheduler and
RNG states so ``--resume`` continues exactly. The output is a safetensors file and a copy of the
model card with its sha256 and a description of the training.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from component.errors import InvalidParameterError, ModelError
from component.model.card import load_card
from component.model.network import build_model, read_state_dict, save_weights
from component.training.pairs import Pair, augment, sample_patch, shared_pairs
from component.training.physics import simulate_pair

DEFAULT_HOLDOUT = "38D_378R_2_3,sen2r_20170703,sen2r_20190723"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m component train``."""
    parser.add_argument("--data-root", type=Path, default=None, help="folder with pairs/")
    parser.add_argument("--card", type=Path, default=None, help="model card (bands, tiling)")
    parser.add_argument("--output", type=Path, required=True, help="output .safetensors file")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights")
    parser.add_argument("--holdout", default=DEFAULT_HOLDOUT, help="pairs training never sees")
    parser.add_argument("--physics-steps", type=int, default=0)
    parser.add_argument("--real-steps", type=int, default=0)
    parser.add_argument(
        "--physics-mix",
        type=float,
        default=0.0,
        help="fraction of simulated patches during the real stage",
    )
    parser.add_argument(
        "--pseudo-surfaces",
        action="store_true",
        help="also use training L1C TOA as extra surfaces for simulation",
    )
    parser.add_argument(
        "--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed (see train_loop)"
    )
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sam-weight", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--no-progress", action="store_true")  # fmt: skip


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sam_weight: float = 0.1
) -> torch.Tensor:
    """Mean L1 over valid pixels plus ``sam_weight`` × mean spectral angle over valid pixels.

    ``mask`` is (N, 1, H, W) bool; invalid target values may be NaN, so they are zeroed before
    any arithmetic (NaN × 0 would still be NaN).
    """
    m = mask.to(pred.dtype)
    target = torch.where(mask, target, torch.zeros_like(target))
    pred = torch.where(mask, pred, torch.zeros_like(pred))
    count = m.sum().clamp_min(1.0)
    l1 = (pred - target).abs().mul(m).sum() / (count * pred.shape[1])
    dot = (pred * target).sum(1, keepdim=True)
    norm = pred.norm(dim=1, keepdim=True) * target.norm(dim=1, keepdim=True)
    cos = (dot / norm.clamp_min(1e-6)).clamp(-1 + 1e-6, 1 - 1e-6)
    angle = torch.acos(cos).mul(m).sum() / count
    return l1 + sam_weight * angle


@dataclass
class DataSource:
    """What the batches are drawn from."""

    surfaces: list[np.ndarray]  # BOA-like chips for simulation
    real: list[Pair]
    bands: tuple[str, ...]
    clip: tuple[float, float]
    fill: float


def _normalize(toa: np.ndarray, src: DataSource) -> np.ndarray:
    """Same normalization as :class:`component.model.inference.Corrector`."""
    x = np.clip(toa, *src.clip)
    return np.where(np.isfinite(x), x, np.float32(src.fill)).astype(np.float32)


def make_batch(
    src: DataSource, n: int, size: int, physics_fraction: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, mask)`` tensors: normalized TOA, BOA with NaN zeroed, valid-pixel mask."""
    xs, ys = [], []
    for _ in range(n):
        if src.real and rng.random() >= physics_fraction:
            pair = src.real[int(rng.integers(len(src.real)))]
            toa, boa = sample_patch(pair.toa, pair.boa, size, rng)
        else:
            surface = src.surfaces[int(rng.integers(len(src.surfaces)))]
            _, boa = sample_patch(surface, surface, size, rng)
            toa, boa = simulate_pair(boa, src.bands, rng)
        toa, boa = augment(toa, boa, rng)
        xs.append(_normalize(toa, src))
        ys.append(boa)
    y = np.stack(ys)
    mask = np.all(np.isfinite(y), axis=1, keepdims=True)
    return (
        torch.from_numpy(np.stack(xs)),
        torch.from_numpy(np.nan_to_num(y, nan=0.0)),
        torch.from_numpy(mask),
    )


def _data_root(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def load_sources(args: argparse.Namespace, card) -> DataSource:
    """Real training pairs and simulation surfaces, holding out ``--holdout`` entirely."""
    root = _data_root(args.data_root)
    if not (root / "pairs").is_dir():
        raise InvalidParameterError(f"no pairs/ folder under {root}; pass --data-root")
    pairs = shared_pairs(root, card.input_bands)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    unknown = holdout - set(pairs)
    if unknown:
        raise InvalidParameterError(f"unknown hold-out pairs {sorted(unknown)}; have {list(pairs)}")
    train = [p for name, p in pairs.items() if name not in holdout]
    if not train:
        raise InvalidParameterError("every pair is held out; nothing to train on")
    surfaces = [p.boa for p in train]
    if args.pseudo_surfaces:
        surfaces += [p.toa for p in train]
    return DataSource(surfaces, train, card.input_bands, (card.clip_min, card.clip_max),
                      card.nodata_fill)  # fmt: skip


def _seed_all(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _schedule(total: int, warmup: int = 50):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return float(0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, progress))))

    return factor


def _checkpoint_path(args: argparse.Namespace) -> Path | None:
    return args.checkpoint_dir / "last.pt" if args.checkpoint_dir else None


def _save_checkpoint(path, step, model, opt, sched, rng, losses) -> None:
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


def train_loop(args: argparse.Namespace, card, src: DataSource) -> tuple[torch.nn.Module, dict]:
    """Run both stages; returns the model and a training summary."""
    from tqdm import tqdm

    rng = _seed_all(args.seed)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(card)
    if args.init is not None:
        model.unet.load_state_dict(read_state_dict(args.init, None))
    model.to(device).train()
    if getattr(args, "freeze_bn", False):
        # Batch statistics of a few patches from different atmospheres wash out the absolute
        # reflectance level the network must regress, and differ from the running statistics
        # used at inference; fixed statistics make training and inference the same function.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    total = args.physics_steps + args.real_steps
    if total <= 0:
        raise InvalidParameterError("nothing to do: set --physics-steps and/or --real-steps")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total))
    losses: list[float] = []
    start = 0
    ckpt = _checkpoint_path(args)
    if args.resume and ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        losses, start = list(state["losses"]), int(state["step"])
    t0 = time.time()
    bar = tqdm(range(start, total), initial=start, total=total, disable=args.no_progress,
               desc="train", unit="step")  # fmt: skip
    for step in bar:
        fraction = 1.0 if step < args.physics_steps else args.physics_mix
        x, y, mask = make_batch(src, args.batch, args.patch, fraction, rng)
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        loss = masked_loss(model(x), y, mask, args.sam_weight)
        if not torch.isfinite(loss):
            raise ModelError(f"training diverged at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if ckpt is not None and (step + 1) % args.checkpoint_every == 0:
            _save_checkpoint(ckpt, step + 1, model, opt, sched, rng, losses)
    summary = {
        "steps": total,
        "physics_steps": args.physics_steps,
        "real_steps": args.real_steps,
        "physics_mix": args.physics_mix,
        "patch_size": args.patch,
        "batch_size": args.batch,
        "learning_rate": args.lr,
        "sam_weight": args.sam_weight,
        "seed": args.seed,
        "freeze_bn": bool(getattr(args, "freeze_bn", False)),
        "device": device.type,
        "wall_time_s": round(time.time() - t0, 1),
        "loss_first_10_mean": float(np.mean(losses[:10])) if losses else None,
        "loss_last_10_mean": float(np.mean(losses[-10:])) if losses else None,
    }
    return model.eval(), summary


def write_outputs(args: argparse.Namespace, card, model, summary: dict, src: DataSource) -> Path:
    """Weights + a card next to them carrying their sha256 and the training description."""
    sha = save_weights(model, args.output)
    data = json.loads(json.dumps(card.raw))
    data["weights"] = {"file": args.output.name, "sha256": sha, "format": "safetensors"}
    data["mlm:total_parameters"] = int(sum(p.numel() for p in model.unet.parameters()))
    data["mlm:framework_version"] = torch.__version__
    data["training"] = {
        **data.get("training", {}),
        **summary,
        "trained_on": "GPU" if summary["device"] == "cuda" else "CPU",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "train_pairs": [p.name for p in src.real],
        "holdout_pairs": [h for h in args.holdout.split(",") if h],
        "init": args.init.name if args.init else None,
        "pseudo_surfaces": bool(args.pseudo_surfaces),
    }
    card_out = args.output.with_suffix(".card.json")
    card_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card_out


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m component train``."""
    card = load_card(args.card)
    src = load_sources(args, card)
    model, summary = train_loop(args, card, src)
    card_out = write_outputs(args, card, model, summary, src)
    print(json.dumps({"weights": str(args.output), "card": str(card_out), **summary}))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m component.training.train", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
