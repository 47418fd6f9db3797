"""The generation backends on the tiny model: ``transformers`` ``generate`` vs an in-process vLLM engine, one game
at a time and batched at several round sizes (``bench_rollout.py`` is the HF path's own benchmark).

Every row plays the same games (the policy in one seat, a scripted opponent in the other); "sequential" calls the
engine once per game (at the smallest round size), "batched" once for all, so every sweep is one ``generate`` over
all due policy seats. Tokens/s are counted over the whole round (games, prompts and generation) and over the
backend's ``generate`` calls alone. With vllm, also the engine's start-up and the time to push the policy's weights
into it. Reports; asserts nothing. The vllm backend needs vLLM installed (``make test-vllm`` makes a venv with it).

    python benchmarks/bench_backends.py [--game bazaar] [--games 32 128 512] [--backends hf vllm]
        [--max-new-tokens 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch
from transformers import PreTrainedTokenizerBase

from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import GenerationBackend
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig

OPPONENT = {"bazaar": "linear", "deal": "greedy", "mafia": "scripted"}


def run(
    engine: RolloutEngine, backend: GenerationBackend, games: int, per_call: int, seed: int
) -> tuple[float, int, float]:
    """Seconds, generated tokens and seconds spent in ``generate`` to play ``games`` games, ``per_call`` at a time."""
    start, tokens, generating = time.perf_counter(), 0, 0.0
    for offset in range(0, games, per_call):
        engine.play(per_call, seed=seed + offset, policy=backend)
        tokens, generating = tokens + engine.stats.generated_tokens, generating + engine.stats.generate_seconds
    return time.perf_counter() - start, tokens, generating


def vllm_backend(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, sampling: SamplingConfig
) -> GenerationBackend:
    """``model`` on an in-process vLLM engine; prints the start-up and the median weight push."""
    from maro_lightning.rollout.vllm_engine import VLLMEngine
    from maro_lightning.rollout.vllm_engine import VLLMGenerate
    from maro_lightning.rollout.vllm_engine import mark_weights_changed

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        engine = VLLMEngine(folder, sampling, tokenizer.eos_token_id, "float32", model.config.max_position_embeddings)
    print(f"# vllm engine start-up: {time.perf_counter() - start:.1f} s")
    pushes = []
    for _ in range(5):
        mark_weights_changed(model)
        tick = time.perf_counter()
        engine.hold(model)
        pushes.append(time.perf_counter() - tick)
    print(f"# vllm weight push: {1000 * statistics.median(pushes):.0f} ms (median of 5)")
    return VLLMGenerate(engine, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="bazaar", choices=sorted(OPPONENT))
    parser.add_argument("--games", type=int, nargs="+", default=[32], help="round sizes (games per call, batched)")
    parser.add_argument("--backends", nargs="+", default=["hf"], choices=["hf", "vllm"])
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TinyModelConfig())
    spec = GameSpec(args.game, options={"obs_format": "compact"}, opponents={OPPONENT[args.game]: 1.0})
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    engine = RolloutEngine([spec], tokenizer, sampling)
    print(
        f"# rollout, {args.game}, tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), "
        f"max_new_tokens={args.max_new_tokens}, median of {args.repeats}"
    )
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    backends = {
        name: HFGenerate(model, tokenizer) if name == "hf" else vllm_backend(model, tokenizer, sampling)
        for name in args.backends
    }
    print("| backend | mode | games | games per call | episodes/s | generated tokens/s | tokens/s in generate |")
    print("|---|---|---:|---:|---:|---:|---:|")
    smallest, rates = min(args.games), {}
    for name, backend in backends.items():
        for mode, games, per_call in [("sequential", smallest, 1)] + [("batched", n, n) for n in args.games]:
            runs = [run(engine, backend, games, per_call, seed=1000 * r) for r in range(args.repeats)]
            rates[name, per_call] = games / statistics.median(s for s, _, _ in runs)
            tokens = statistics.median(t / s for s, t, _ in runs)
            generating = statistics.median(t / g for _, t, g in runs)
            row = f"| {name} | {mode} | {games} | {per_call} | {rates[name, per_call]:.1f} | {tokens:,.0f} "
            print(row + f"| {generating:,.0f} |")
    for name in backends:
        ratio = rates[name, smallest] / rates[name, 1]
        print(f"\n{name}: batched / sequential episodes/s at {smallest} games: {ratio:.1f}×")


if __name__ == "__main__":
    main()
