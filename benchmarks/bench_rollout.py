"""Rollout and scoring throughput on the tiny model (targets: batched >= 10× one game at a time at 32 games and >= 15×
at 128; scoring >= 2× fewer seconds per behaviour than before). Reports; asserts nothing.

Three parts, chosen with ``--parts``:

- ``rollout``: episodes/s playing the same games (same seeds: deal, seats, scripted opponent) one game per engine
  call ("sequential") and all in one call ("batched": one ``generate`` per sweep over every due policy seat). The
  modes alternate within each repeat, and which goes first alternates between repeats (the machine's load drifts).
- ``scoring``: behaviours/s of ``MaroModule.score`` on one round of 128 games, full fine-tuning and LoRA, with and
  without a KL reference (under LoRA the reference is the base model). Every variant scores the same behaviours: the
  replies come from a fake policy whose reply depends only on its prompt, whatever the engine's batches.
- ``round``: the per-round split (``rollout/play_seconds``, ``score_seconds``, ``train_seconds``) of a short real
  ``maro fit`` of configs/demo.yaml (a few cloning rounds, then RL rounds with the KL reference), read from its
  metrics.csv. ``train_seconds`` is logged by the next round, so it is matched back to the round it trained on.

To compare two versions of the code, run this file with ``PYTHONPATH`` at each version's tree in turn (it uses only
the public API both have), alternating the runs.

    OMP_NUM_THREADS=1 python benchmarks/bench_rollout.py [--parts rollout scoring round] [--games 32 128]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from maro_lightning.lora import LoraConfig
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout import game_seeds

ROOT = Path(__file__).resolve().parents[1]
OPPONENT = {"bazaar": "linear", "deal": "greedy", "mafia": "scripted"}
KL_BETA = 0.01  # the demo's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["rollout", "scoring"], choices=["rollout", "scoring", "round"])
    parser.add_argument("--game", default="bazaar", choices=sorted(OPPONENT))
    parser.add_argument("--games", type=int, nargs="+", default=[32, 128], help="rollout: games per comparison")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-games", type=int, default=128, help="scoring: games of the scored round")
    parser.add_argument(
        "--obs-format", default="compact", choices=["compact", "full"], help="scoring: the game's prompts"
    )
    parser.add_argument("--round-steps", type=int, default=60, help="round: optimizer steps of the fit")
    parser.add_argument("--imitation-rounds", type=int, default=4, help="round: cloning rounds before RL")
    args = parser.parse_args()
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {load()}")
    if "rollout" in args.parts:
        rollout(args)
    if "scoring" in args.parts:
        scoring(args)
    if "round" in args.parts:
        round_split(args)
    print(f"\n# load at the end {load()}")


def load() -> str:
    """The 1, 5 and 15 minute load averages (this VM's timings move with its other jobs)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


# --------------------------------------------------------------------------------------------------------- rollout
def rollout(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TinyModelConfig())
    spec = GameSpec(args.game, options={"obs_format": "compact"}, opponents={OPPONENT[args.game]: 1.0})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=args.max_new_tokens))
    backend = HFGenerate(model, tokenizer)
    print(
        f"\n## rollout: {args.game}, tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), "
        f"max_new_tokens={args.max_new_tokens}, median of {args.repeats}"
    )
    runs: dict[tuple[int, str], list[tuple[float, int]]] = {}
    for repeat in range(args.repeats):
        for games in args.games:
            seeds = game_seeds(1000 * repeat + games, games)
            modes = ("sequential", "batched") if repeat % 2 == 0 else ("batched", "sequential")
            for mode in modes:
                runs.setdefault((games, mode), []).append(play(engine, backend, seeds, mode == "batched"))
    print("| games | mode | episodes/s | generated tokens/s | batched / sequential (each repeat) |")
    print("|---:|---|---:|---:|---|")
    for games in args.games:
        rates = {}
        for mode in ("sequential", "batched"):
            seconds = [s for s, _ in runs[games, mode]]
            rates[mode] = games / statistics.median(seconds)
            tokens = statistics.median(t / s for s, t in runs[games, mode])
            each = [s / b for (s, _), (b, _) in zip(runs[games, "sequential"], runs[games, "batched"], strict=True)]
            ratios = ", ".join(f"{r:.1f}" for r in each) if mode == "batched" else ""
            print(f"| {games} | {mode} | {rates[mode]:.1f} | {tokens:,.0f} | {ratios} |")
        print(f"| {games} | **batched / sequential** | **{rates['batched'] / rates['sequential']:.1f}×** | | |")


def play(engine: RolloutEngine, backend: HFGenerate, seeds: list[int], batched: bool) -> tuple[float, int]:
    """Seconds and generated tokens to play the games of ``seeds``, all in one call or one per call."""
    torch.manual_seed(seeds[0])
    start, tokens = time.perf_counter(), 0
    for part in [seeds] if batched else [[seed] for seed in seeds]:
        engine.play_seeds(part, backend)
        tokens += engine.stats.generated_tokens
    return time.perf_counter() - start, tokens


# --------------------------------------------------------------------------------------------------------- scoring
class PromptKeyedReplies:
    """A fake policy whose reply (2 to 16 tokens, the last one EOS) depends only on its prompt: every version of the
    engine, however it batches, plays the same games."""

    def __init__(self, vocab: int, eos: int) -> None:
        self.vocab, self.eos = vocab, eos

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        replies = []
        for prompt in prompts:
            rng = random.Random(" ".join(map(str, prompt)))
            replies.append([rng.randrange(5, self.vocab) for _ in range(rng.randrange(1, 16))] + [self.eos])
        return replies


def scoring(args: argparse.Namespace) -> None:
    hf_logging.disable_progress_bar()  # saving and loading the LoRA base
    torch.manual_seed(0)
    modules = score_modules()
    tokenizer = modules["full, no KL"].tokenizer
    spec = GameSpec(args.game, options=observation(args), opponents={OPPONENT[args.game]: 1.0})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=16))
    fake = PromptKeyedReplies(len(tokenizer), tokenizer.eos_token_id)
    games = engine.play_seeds(game_seeds(7, args.score_games), fake)
    pairs = [(g.prompt_ids[t], g.response_ids[t]) for g in games for t in sorted(g.prompt_ids)]
    tokens = sum(len(p) + len(r) for p, r in pairs)
    print(
        f"\n## scoring: {len(pairs)} behaviours of {args.score_games} {args.game} games, options {observation(args)} "
        f"({tokens:,} tokens, {padded_tokens(pairs, 64):,} in length-sorted batches of 64), median of {args.repeats}; "
        "a row per behaviour vs a row per player and game over its shared prefix (score_shared_prefixes)"
    )
    seconds: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):  # the variants take turns
        for name, module in modules.items():
            for shared in (False, True):
                module.score_shared_prefixes = shared
                start = time.perf_counter()
                module.score(games)
                seconds.setdefault((name, shared), []).append(time.perf_counter() - start)
    print("| model | KL reference | row per behaviour: ms per behaviour | shared prefixes | shared / per behaviour |")
    print("|---|---|---:|---:|---:|")
    for name in modules:
        alone, shared = (1000 * statistics.median(seconds[name, s]) / len(pairs) for s in (False, True))
        model, kl = name.split(", ")
        print(f"| {model} | {kl} | {alone:.2f} | {shared:.2f} | {shared / alone:.2f} |")


def observation(args: argparse.Namespace) -> dict:
    """The game options of ``--obs-format``: Bazaar's compact prompts (a state line), or the game's defaults (full
    text)."""
    return {"obs_format": "compact"} if args.obs_format == "compact" and args.game == "bazaar" else {}


def score_modules() -> dict[str, MaroModule]:
    """The tiny model fully fine-tuned and under LoRA (rank 16 on every linear layer, on the tiny model exported as the
    base), each with and without a KL reference (a frozen snapshot; under LoRA the base)."""
    folder = Path(tempfile.mkdtemp(prefix="bench_rollout_base_"))
    base = MaroModule(tiny=TinyModelConfig())
    base.configure_model()
    base.save_pretrained(str(folder))
    modules = {}
    for name, kwargs in {
        "full": {"tiny": TinyModelConfig()},
        "LoRA": {"policy": str(folder), "attn_implementation": "eager", "lora": LoraConfig()},
    }.items():
        for kl, beta in (("no KL", 0.0), ("KL", KL_BETA)):
            torch.manual_seed(0)
            module = MaroModule(**kwargs, loss=LossConfig(beta=beta))
            module.configure_model()
            modules[f"{name}, {kl}"] = module
    return modules


def padded_tokens(pairs: list[tuple[list[int], list[int]]], batch_size: int) -> int:
    """Positions the scoring forwards compute, padding included, over batches of ``batch_size`` sorted by length."""
    lengths = sorted(len(p) + len(r) for p, r in pairs)
    return sum(
        max(chunk) * len(chunk) for chunk in (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size))
    )


# ----------------------------------------------------------------------------------------------------------- round
ROUND_CONFIG = """
trainer:
  max_steps: {steps}
  enable_checkpointing: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {root}}}
  callbacks:  # the demo's simulation alone (no checkpoints, no end-of-fit evaluation)
    - class_path: maro_lightning.callbacks.SimulationCallback
      init_args:
        games:
          - name: bazaar
            options: {{obs_format: compact, listing_range: [100, 100]}}
            opponents: {{linear: 1.0}}
            learner_players: [1]
            teacher: linear
        games_per_round: 128
        imitation_rounds: {imitation}
        rl_lr: 0.0003
"""


def round_split(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_rollout_fit_"))
    override = root / "override.yaml"
    override.write_text(ROUND_CONFIG.format(steps=args.round_steps, root=root, imitation=args.imitation_rounds))
    command = [sys.executable, "-m", "maro_lightning.cli", "fit", "-c", str(ROOT / "configs" / "demo.yaml")]
    start = time.perf_counter()
    # cwd: a folder outside any checkout, so that `-m` imports the code PYTHONPATH names
    done = subprocess.run([*command, "-c", str(override)], cwd=root, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"maro fit failed:\n{done.stderr[-3000:]}")
    rows = round_rows(next(root.glob("lightning_logs/version_*/metrics.csv")))
    print(
        f"\n## round: maro fit -c configs/demo.yaml, {args.imitation_rounds} cloning rounds then RL (KL beta "
        f"{KL_BETA}), 128 games a round, {args.round_steps} steps ({time.perf_counter() - start:.0f} s); medians"
    )
    print("| rounds | n | behaviours | play s | score s | train s | score ms per behaviour |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for phase in ("cloning", "RL"):
        group = [r for r in rows if r["phase"] == phase]
        med = {k: statistics.median(r[k] for r in group if r[k] is not None) for k in ("behaviours", "play", "score")}
        trained = [r["train"] for r in group if r["train"] is not None]
        per = 1000 * statistics.median(r["score"] / r["behaviours"] for r in group)
        train = f"{statistics.median(trained):.2f}" if trained else "n/a"
        print(
            f"| {phase} | {len(group)} | {med['behaviours']:.0f} | {med['play']:.2f} | {med['score']:.2f} | {train} "
            f"| {per:.2f} |"
        )


def round_rows(path: Path) -> list[dict]:
    """One row per round: its phase, behaviours, play and score seconds, and the seconds its training took (logged
    as ``train_seconds`` by the next round; None for the last)."""
    with path.open() as f:
        logged = [r for r in csv.DictReader(f) if r.get("rollout/play_seconds")]
    logged.sort(key=lambda r: float(r["rollout/round"]))
    rows = []
    for this, following in zip(logged, [*logged[1:], None], strict=True):
        rows.append(
            {
                "phase": "cloning" if float(this["rollout/imitation"]) else "RL",
                "behaviours": float(this["rollout/behaviours"]),
                "play": float(this["rollout/play_seconds"]),
                "score": float(this["rollout/score_seconds"]),
                "train": None if following is None else float(following["rollout/train_seconds"]),
            }
        )
    return rows


if __name__ == "__main__":
    main()
