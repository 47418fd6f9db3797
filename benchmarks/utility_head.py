"""What limits the behaviour-utility head, and what raises its explained variance: an offline, controlled study.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/utility_head.py CKPT [--train-games 2048 --held-out-games 1024]
    .venv/bin/python benchmarks/utility_head.py CKPT --cache runs/head.pt   # collect once, refit from the cache

From a checkpoint, the script plays ``--train-games`` and ``--held-out-games`` games of the checkpoint's policy
against the opponent mix it trained on (``RolloutEngine.play_seeds``; its frozen seats are the checkpoint's own
policy), scores them with ``MaroModule.score`` and credits them with the module's credit config through
``CreditAssigner`` twice, once per utility target (``outcome``: the return-to-go; ``lambda_return``: the λ-return
``V_t + GAE_λ(δ)_t`` with the checkpoint's V, Schulman et al. 2015, arXiv 1506.02438). Train and held-out seeds come
from ``game_seeds`` below and above ``HELD_OUT_SEEDS``: disjoint. For each learner behaviour it keeps the trunk's
hidden states where the head reads them (the last prompt token for V, the last response token for Q), the targets,
the M2 weight, the (game, role) and the agent, and hand-made features of the game state (below).

Every variant is then fitted on the train behaviours and scored on the held-out ones by the library's
``metrics.explained_variance`` (``1 − Var([V − y, Q − y]) / Var(y)``) per (game, role), against the return-to-go
whatever the variant regressed, with a bootstrap standard error over held-out agents (Efron 1979). Variants:

- ``checkpoint head``: the head as the checkpoint holds it, trained online (no fit): what training logs.
- ``checkpoint head + N epochs``: that head trained further on the train set: is the online head undertrained?
- ``UtilityHead`` from scratch, the shipped default (width 256, depth 1, AdamW at the self-play configs' RL rate
  3e-4), then one factor at a time: epochs (the online head sees each behaviour once), learning rate, width and
  depth, the λ-return target, and inputs (a middle layer, the final layer mean-pooled up to the read position, or the
  three concatenated, instead of the final layer's last token).
- ``early-stopped``: up to 100 epochs at 3e-3, keeping the epoch of least loss on a fifth of the train agents set
  aside: the most a head on these inputs gets out of the train set.
- ``hand features``: an early-stopped MLP on what the player sees (Bazaar: role, own reservation, listing, turn and
  messages left, both standing offers and the other's last concession; Mafia: role, day and phase, the living, what
  the role knows privately), plus the behaviour's action at Q; ``+ hidden`` adds what it cannot see (Bazaar: the other's
  reservation and whether the other seat is scripted; Mafia: how many Mafia and villagers are alive, whether the
  action's target is Mafia). The first bounds what the observation holds, the second what the game's hidden state
  and the opponents' sampling leave unpredictable.

Prints a Markdown table (per role and variant: EV ± SE, and the difference from the default ± its paired SE) and
the wall times. Reports, does not assert.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch import nn

from maro_lightning import checkpoints
from maro_lightning.batch import right_pad
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import flatten
from maro_lightning.credit.episode import Behaviour
from maro_lightning.credit.episode import Episode
from maro_lightning.metrics import explained_variance
from maro_lightning.models import UtilityHead
from maro_lightning.models import trunk_and_head
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import game_seeds
from maro_lightning.scoring import credit_round
from maro_lightning.seeding import seeded

TARGETS = ("outcome", "lambda_return")
TRUNK_INPUTS = ("last", "mid", "mean")  # final layer at the read position, a middle layer there, final layer mean
LAST_MEAN = ("last", "mean")
HEAD_READS = {"last": ("last",), "last_mean": LAST_MEAN}  # HeadConfig.inputs -> the same inputs here
HAND_INPUTS = ("visible", "hidden")
RL_LR = 3e-4  # the self-play configs' rl_lr: the head's rate from the end of the warm start on
BATCH = 128  # behaviours per step, as the self-play configs' data.batch_size


# ----------------------------------------------------------------------------------------------- the data
@dataclass
class Behaviours:
    """The learner behaviours of a set of games, in one order: inputs ``[N, 2, D]`` (row 0 where V reads, row 1
    where Q reads), targets ``[N]`` float64, M2 weights ``[N]``, ``keys`` "game/role", ``agent`` ``[N]`` int64 (one
    id per (episode, player)), and the checkpoint head's V and Q ``[N]``."""

    inputs: dict[str, Tensor]
    targets: dict[str, Tensor]
    weights: Tensor
    keys: list[str]
    agent: Tensor
    values: Tensor
    q_values: Tensor

    @staticmethod
    def cat(parts: list[Behaviours]) -> Behaviours:
        offsets = torch.tensor([0] + [int(p.agent.max()) + 1 for p in parts[:-1]]).cumsum(0)
        return Behaviours(
            inputs={k: torch.cat([p.inputs[k] for p in parts]) for k in parts[0].inputs},
            targets={k: torch.cat([p.targets[k] for p in parts]) for k in parts[0].targets},
            weights=torch.cat([p.weights for p in parts]),
            keys=[k for p in parts for k in p.keys],
            agent=torch.cat([p.agent + o for p, o in zip(parts, offsets, strict=True)]),
            values=torch.cat([p.values for p in parts]),
            q_values=torch.cat([p.q_values for p in parts]),
        )


def collect(module: MaroModule, specs: list[GameSpec], seeds: list[int], chunk: int = 256) -> Behaviours:
    """Play one game per seed of the mix ``specs`` with the module's policy, ``chunk`` games at a time."""
    engine = RolloutEngine(specs, module.tokenizer, module.sampling)
    parts = []
    for start in range(0, len(seeds), chunk):
        part = seeds[start : start + chunk]
        with seeded(part[0], module.device):
            games = engine.play_seeds(part, module.policy_backend())
        parts.append(behaviours_of(module, games))
    return Behaviours.cat(parts)


def behaviours_of(module: MaroModule, games: list[PlayedGame]) -> Behaviours:
    """Score and credit a chunk of games through the library, then read the inputs of every learner behaviour."""
    scored = module.score(games)
    samples = {
        target: credit_round(CreditAssigner(dataclasses.replace(module.credit_config, utility_target=target)), scored)
        for target in TARGETS
    }
    first = samples[TARGETS[0]]
    agents = {key: i for i, key in enumerate(dict.fromkeys((s.episode_id, s.player) for s in first))}
    inputs = trunk_inputs(module, scored.pairs)
    head = module.utility_head
    read = torch.cat([inputs[name] for name in HEAD_READS[head.inputs]], dim=-1)
    torch.testing.assert_close(head(read[:, 0]), scored.values)  # what the library's head reads, exactly
    inputs |= hand_inputs(games, scored.episodes)
    return Behaviours(
        inputs=inputs,
        targets={t: torch.tensor([s.utility_target for s in rows], dtype=torch.float64) for t, rows in samples.items()},
        weights=torch.tensor([s.weight for s in first]),
        keys=[f"{s.game}/{s.role}" for s in first],
        agent=torch.tensor([agents[(s.episode_id, s.player)] for s in first]),
        values=scored.values,
        q_values=scored.q_values,
    )


@torch.no_grad()
def trunk_inputs(module: MaroModule, pairs: list, batch_size: int = 64) -> dict[str, Tensor]:
    """``TRUNK_INPUTS`` at each behaviour's last prompt and last response token: ``name -> [N, 2, H]``.

    One forward of the trunk per batch of right-padded prompt + response (as ``scoring.response_logprobs``), with
    every layer's output; "mean" averages the final layer over the positions up to the read one (causal)."""
    trunk = trunk_and_head(module.policy)[0].eval()
    n, size = len(pairs), module.policy.config.hidden_size
    out = {name: torch.zeros(n, 2, size) for name in TRUNK_INPUTS}
    order = sorted(range(n), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        ids, mask = right_pad([pairs[i][0] + pairs[i][1] for i in rows], module.pad_id)
        states = trunk(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        at = torch.tensor([[len(pairs[i][0]) - 1, len(pairs[i][0]) + len(pairs[i][1]) - 1] for i in rows])  # [B, 2]
        b = torch.arange(len(rows))[:, None]
        final, middle = states[-1], states[len(states) // 2]  # [B, L, H]; the tuple starts with the embeddings
        out["last"][rows] = final[b, at]
        out["mid"][rows] = middle[b, at]
        out["mean"][rows] = final.cumsum(1)[b, at] / (at + 1)[..., None]
    return out


# ---------------------------------------------------------------------------------- hand-made features
def hand_inputs(games: list[PlayedGame], episodes: list[Episode]) -> dict[str, Tensor]:
    """``visible`` and ``hidden`` (visible with the hidden state appended) ``[N, 2, F]`` in flattening order; empty
    (F = 0) for a game without a feature function."""
    game_of = {id(e): g for e, g in zip(episodes, games, strict=True)}
    rows = [HAND_FEATURES.get(e.game, _no_features)(game_of[id(e)], e, b) for e, b in flatten(episodes)]
    visible = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(len(rows), 2, -1)
    hidden = torch.tensor([r[1] for r in rows], dtype=torch.float32).reshape(len(rows), 2, -1)
    return {"visible": visible, "hidden": torch.cat([visible, hidden], dim=-1)}


def _no_features(game: PlayedGame, episode: Episode, behaviour: Behaviour) -> tuple[list, list]:
    return [[], []], [[], []]


def _one_hot(value: str, choices: tuple[str, ...]) -> list[float]:
    return [float(value == c) for c in choices]


def _action(behaviour: Behaviour, kinds: tuple[str, ...]) -> list[float]:
    """The behaviour's action as the player wrote it: kind one-hot and an invalid flag."""
    kind = behaviour.info.get("kind") or (behaviour.action or "").strip("[]").split(":")[0].lower() or "talk"
    return _one_hot(kind, kinds) + [float(not behaviour.valid)]


def bazaar_features(game: PlayedGame, episode: Episode, behaviour: Behaviour) -> tuple[list, list]:
    """From the compact prompt ``S L=100 r=57 t=2 | 100 53 >``: role, own reservation, turn, messages left, both
    standing offers, the other's last concession (prices / L), whether this is a retry; at Q the action and its
    offer. Hidden: the other's reservation, the zone b − s, whether the other seat is scripted."""
    env = game.env
    line = behaviour.prompt.split("\n")[0]
    head, _, rest = line.partition(" | ")
    role, listing, reservation, told = re.match(r"(\w) L=(\d+) r=(\d+) t=(\d+)", head).groups()
    listing, left = int(listing), env.max_messages - int(told)
    marks = rest.replace(">", "").split()
    speakers = [(env.first + i) % 2 for i in range(len(marks))]
    mine = [int(m) / listing for m, s in zip(marks, speakers, strict=True) if s == behaviour.player and m.isdigit()]
    theirs = [int(m) / listing for m, s in zip(marks, speakers, strict=True) if s != behaviour.player and m.isdigit()]
    concession = abs(theirs[-1] - theirs[-2]) if len(theirs) > 1 else 0.0
    state = [float(role == "S"), int(reservation) / listing, int(told) / env.max_messages, left / env.max_messages]
    state += [float(bool(mine)), mine[-1] if mine else 0.0, float(bool(theirs)), theirs[-1] if theirs else 0.0]
    state += [concession, float("invalid" in behaviour.prompt)]
    act = _action(behaviour, ("offer", "accept", "walk", "talk")) + [behaviour.info.get("offer", 0) / listing]
    other = 1 - behaviour.player
    hidden = [env.reservation[other] / listing, (env.reservation[1] - env.reservation[0]) / listing]
    hidden.append(float(game.seats[other] not in ("policy", "frozen")))
    return [state + [0.0] + [0.0] * len(act), state + [1.0] + act], [hidden, hidden]


MAFIA_ROLES = ("mafia", "villager", "doctor", "detective")


def mafia_features(game: PlayedGame, episode: Episode, behaviour: Behaviour) -> tuple[list, list]:
    """From the compact prompt ``mafia P5 N1 night | alive 0 1 2 3 4 5 | mates 3=mafia ... | > vote 0 1 2 4``: role,
    day, phase, the living, the Mafia teammates alive (Mafia), the found Mafia and cleared players alive
    (Detective), whether this is a retry; at Q the action. Hidden: Mafia and villagers alive, whether the
    action's target is Mafia, how many other seats are scripted."""
    env = game.env
    sections = behaviour.prompt.split("\n")[0].split(" | ")
    role, _, day, phase = sections[0].split()[:4]
    alive = {int(p) for p in sections[1].split()[1:]}
    private = next((s for s in sections[2:] if s.split()[0] in ("mates", "inv", "prot")), "")
    found = {int(p): kind for p, kind in re.findall(r"(\d+)=(mafia|village)", private)}
    n = env.n_players
    state = _one_hot(role, MAFIA_ROLES) + [int(day[1:]) / env.max_days] + _one_hot(phase, ("night", "talk", "vote"))
    state += [len(alive) / n, sum(p in alive and k == "mafia" for p, k in found.items()) / n]
    state += [sum(p in alive and k == "village" for p, k in found.items()) / n, float("invalid" in behaviour.prompt)]
    act = _action(behaviour, ("vote", "protect", "investigate", "talk"))
    mafia_alive = sum(episode.roles[p] == "mafia" for p in alive)
    hidden = [mafia_alive / n, (len(alive) - mafia_alive) / n]
    hidden.append(sum(s not in ("policy", "frozen") for p, s in game.seats.items() if p != behaviour.player) / n)
    target_is_mafia = float(behaviour.info.get("target_is_mafia", False))
    return [state + [0.0] + [0.0] * len(act), state + [1.0] + act], [hidden + [0.0], hidden + [target_is_mafia]]


HAND_FEATURES: dict[str, Callable[[PlayedGame, Episode, Behaviour], tuple[list, list]]] = {
    "bazaar": bazaar_features,
    "mafia": mafia_features,
}


# ---------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class Variant:
    """A regressor of V and Q and how it is fitted. ``inputs`` are concatenated; ``start="checkpoint"`` continues
    from the checkpoint's head instead of a fresh one (zero-initialised output, as ``UtilityHead``)."""

    name: str
    inputs: tuple[str, ...] = ("last",)
    target: str = "outcome"
    width: int = 256
    depth: int = 1
    lr: float = RL_LR
    epochs: int = 20
    start: str = "scratch"
    early_stop: bool = False


def variants(head_inputs: str = "last") -> list[Variant]:
    """The default, then one factor at a time (budget, the checkpoint's head trained further, shape, target,
    inputs), then the ceilings on hand-made features. ``head_inputs``: the checkpoint head's ``HeadConfig.inputs``."""
    default = Variant("default: 256×1, lr 3e-4, 20 epochs")
    refit = dataclasses.replace(default, start="checkpoint", inputs=HEAD_READS[head_inputs])
    best = dataclasses.replace(default, lr=3e-3, epochs=100, early_stop=True)
    one_factor = [
        *(dataclasses.replace(default, name=f"epochs {e}", epochs=e) for e in (1, 5, 100)),
        *(dataclasses.replace(default, name=f"lr {lr:g}", lr=lr) for lr in (3e-5, 3e-3)),
        dataclasses.replace(default, name="epochs 1, lr 3e-3", epochs=1, lr=3e-3),
        dataclasses.replace(refit, name="checkpoint head + 1 epoch, lr 3e-4", epochs=1),
        dataclasses.replace(refit, name="checkpoint head + 1 epoch, lr 3e-3", epochs=1, lr=3e-3),
        dataclasses.replace(refit, name="checkpoint head + 20 epochs, lr 3e-4"),
        dataclasses.replace(default, name="width 64", width=64),
        dataclasses.replace(default, name="width 1024", width=1024),
        dataclasses.replace(default, name="depth 0 (linear probe)", depth=0),
        dataclasses.replace(default, name="depth 2", depth=2),
        dataclasses.replace(default, name="target λ-return", target="lambda_return"),
        dataclasses.replace(default, name="input: middle layer", inputs=("mid",)),
        dataclasses.replace(default, name="input: mean-pooled", inputs=("mean",)),
        *(dataclasses.replace(default, name=f"input: last+mean, epochs {e}", inputs=LAST_MEAN, epochs=e)
          for e in (1, 5)),
        dataclasses.replace(default, name="input: last+mean (head.inputs: last_mean)", inputs=LAST_MEAN),
        dataclasses.replace(default, name="input: last+middle+mean", inputs=TRUNK_INPUTS),
        dataclasses.replace(best, name="lr 3e-3, early-stopped (≤ 100 epochs)"),
        dataclasses.replace(best, name="input: last+mean, lr 3e-3, early-stopped", inputs=LAST_MEAN),
        dataclasses.replace(best, name="input: last+middle+mean, lr 3e-3, early-stopped", inputs=TRUNK_INPUTS),
    ]  # fmt: skip
    hand = Variant("hand features (visible)", inputs=("visible",), width=64, depth=2, lr=3e-3, epochs=100,
                   early_stop=True)  # fmt: skip
    return [default, *one_factor, hand, dataclasses.replace(hand, name="hand + hidden state", inputs=("hidden",))]


class Standardized(nn.Module):
    """``UtilityHead`` for trunk states; for hand features, column standardisation (train mean and sd) before an
    MLP of the same shape without the LayerNorm (which would normalise a row across unrelated features)."""

    def __init__(self, variant: Variant, train: Tensor) -> None:
        super().__init__()
        flat = train.reshape(-1, train.shape[-1])
        self.register_buffer("mean", flat.mean(0))
        self.register_buffer("scale", flat.std(0).clamp_min(1e-6))
        self.head = UtilityHead(flat.shape[-1], variant.width, variant.depth)
        self.head.body[0] = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.head((x - self.mean) / self.scale)


def inputs_of(variant: Variant, data: Behaviours) -> Tensor:
    return torch.cat([data.inputs[name] for name in variant.inputs], dim=-1)


def fit(variant: Variant, train: Behaviours, checkpoint_head: UtilityHead, seed: int = 0) -> nn.Module:
    """AdamW (the configs' optimizer, weight decay 0.01) on the library's utility loss, M2-weighted, ``BATCH``
    behaviours a step, ``variant.epochs`` passes over the train behaviours; with ``early_stop``, over the agents
    outside a fifth kept for validation, returning the epoch with the lowest validation loss."""
    torch.manual_seed(seed)
    x, y, w = inputs_of(variant, train), train.targets[variant.target], train.weights
    model = new_model(variant, x, checkpoint_head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=variant.lr, weight_decay=0.01)
    kept = train.agent % 5 == 0 if variant.early_stop else torch.zeros(len(y), dtype=torch.bool)
    fit_rows, val_rows = (~kept).nonzero().squeeze(1), kept.nonzero().squeeze(1)
    best, best_loss = copy.deepcopy(model.state_dict()), float("inf")
    for _ in range(variant.epochs):
        model.train()
        for rows in fit_rows[torch.randperm(len(fit_rows))].split(BATCH):
            loss = UtilityHead.loss(*model(x[rows]).unbind(-1), y[rows], w[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if variant.early_stop:
            with torch.no_grad():
                loss = float(UtilityHead.loss(*model.eval()(x[val_rows]).unbind(-1), y[val_rows], w[val_rows]))
            if loss < best_loss:
                best, best_loss = copy.deepcopy(model.state_dict()), loss
    if variant.early_stop:
        model.load_state_dict(best)
    return model.eval()


def new_model(variant: Variant, x: Tensor, checkpoint_head: UtilityHead) -> nn.Module:
    if variant.start == "checkpoint":
        return copy.deepcopy(checkpoint_head)
    if set(variant.inputs) <= set(HAND_INPUTS):
        return Standardized(variant, x)
    return UtilityHead(x.shape[-1], variant.width, variant.depth)


# ---------------------------------------------------------------------------------------------- scoring
def ev_by_role(values: Tensor, q_values: Tensor, data: Behaviours, boot: int, seed: int = 0) -> dict[str, tuple]:
    """Per "game/role": the EV against the return-to-go and its ``[boot]`` bootstrap replicates (the same resamples
    for every variant, so that differences between variants are paired)."""
    target = data.targets["outcome"]
    out = {}
    for key in sorted(set(data.keys)):
        rows = torch.tensor([k == key for k in data.keys])
        v, q, y = values[rows].double(), q_values[rows].double(), target[rows]
        point = explained_variance(v, q, y)
        out[key] = (None if point is None else float(point), bootstrap_evs(v, q, y, data.agent[rows], boot, seed))
    return out


def agent_sums(v: Tensor, q: Tensor, y: Tensor, agent: Tensor) -> Tensor:
    """``[A, 5]`` per agent: Σ residual, Σ residual² (over its V and Q rows), Σ y, Σ y², count."""
    _, index = agent.unique(return_inverse=True)
    residual = torch.stack([v - y, q - y])  # [2, n]
    columns = [residual.sum(0), (residual**2).sum(0), y, y**2, torch.ones_like(y)]
    sums = torch.zeros(int(index.max()) + 1, len(columns), dtype=torch.float64)
    for j, column in enumerate(columns):
        sums[:, j].index_add_(0, index, column.double())
    return sums


def ev_from_sums(totals: Tensor) -> Tensor:
    """``[..., 5]`` summed :func:`agent_sums` -> ``[...]`` explained variance, as ``metrics.explained_variance``."""
    n = totals[..., 4]
    var_residual = totals[..., 1] / (2 * n) - (totals[..., 0] / (2 * n)) ** 2
    var_target = totals[..., 3] / n - (totals[..., 2] / n) ** 2
    return 1 - var_residual / var_target


def bootstrap_evs(v: Tensor, q: Tensor, y: Tensor, agent: Tensor, boot: int, seed: int = 0) -> Tensor:
    """``[boot]`` EVs of resamples of the agents with replacement (their behaviours stay together; Efron 1979)."""
    sums = agent_sums(v, q, y, agent)
    draws = torch.randint(len(sums), (boot, len(sums)), generator=torch.Generator().manual_seed(seed))
    ones = torch.ones(boot, len(sums), dtype=torch.float64)
    counts = torch.zeros_like(ones).scatter_add_(1, draws, ones)  # [boot, A]: how often each agent was drawn
    return ev_from_sums(counts @ sums)


# ---------------------------------------------------------------------------------------------- the run
def load(path: str) -> tuple[MaroModule, list[GameSpec]]:
    """The checkpoint's module (policy in eval mode) and the game mix it trained on."""
    module = MaroModule.load_from_checkpoint(path, map_location="cpu")
    module.policy.eval()
    return module, checkpoints.trained_specs(checkpoints.load(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--train-games", type=int, default=2048)
    parser.add_argument("--held-out-games", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the SE")
    parser.add_argument("--only", nargs="*", help="fit only the variants whose names contain one of these")
    parser.add_argument("--cache", type=Path, help="a .pt file: the collected behaviours, written once, then read")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    module, specs = load(args.checkpoint)
    train, held_out = collected(module, specs, args)
    collected_s = time.perf_counter() - start
    print(f"{args.checkpoint}: {len(train.keys)} train and {len(held_out.keys)} held-out behaviours "
          f"({collected_s:.0f} s to collect)")  # fmt: skip
    online = ev_by_role(held_out.values, held_out.q_values, held_out, args.boot)
    rows = [("checkpoint head (as trained online)", online)]
    for variant in variants(module.utility_head.inputs):
        if args.only and not any(part in variant.name for part in args.only):
            continue
        tick = time.perf_counter()
        model = fit(variant, train, module.utility_head, args.seed)
        with torch.no_grad():
            values, q_values = model(inputs_of(variant, held_out)).unbind(-1)
        rows.append((variant.name, ev_by_role(values, q_values, held_out, args.boot)))
        print(f"  {variant.name}: {time.perf_counter() - tick:.0f} s", flush=True)
    print(table(rows, held_out, reference=variants()[0].name))
    print(f"wall time {time.perf_counter() - start:.0f} s")


def collected(module: MaroModule, specs: list[GameSpec], args: argparse.Namespace) -> tuple[Behaviours, Behaviours]:
    """The train and held-out behaviours: played now, or read from ``args.cache`` (plain tensors and lists)."""
    if args.cache is not None and args.cache.exists():
        cached = torch.load(args.cache, weights_only=True)
        return Behaviours(**cached["train"]), Behaviours(**cached["held_out"])
    train = collect(module, specs, game_seeds(args.seed, args.train_games))
    held_out = collect(module, specs, game_seeds(args.seed, args.held_out_games, held_out=True))
    if args.cache is not None:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"train": dataclasses.asdict(train), "held_out": dataclasses.asdict(held_out)}, args.cache)
    return train, held_out


def table(rows: list[tuple[str, dict]], held_out: Behaviours, reference: str) -> str:
    """EV ± bootstrap SE per variant and role; with Δ ± paired SE against the ``reference`` row when it is there."""
    keys = sorted(set(held_out.keys))
    agents = {k: len({int(a) for a, kk in zip(held_out.agent, held_out.keys, strict=True) if kk == k}) for k in keys}
    base = dict(rows).get(reference)
    lines = ["| variant | " + " | ".join(f"{k} (n={agents[k]})" for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, evs in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(evs[k], None if base is None else base[k]) for k in keys) + " |")
    return "\n".join(lines)


def _cell(ev: tuple, base: tuple | None) -> str:
    (point, boot), shown = ev, ""
    if point is None:
        return "n/a"
    if base is not None and base[0] is not None and boot is not base[1]:
        shown = f" (Δ {point - base[0]:+.3f} ± {float((boot - base[1]).std()):.3f})"
    return f"{point:+.3f} ± {float(boot.std()):.3f}{shown}"


if __name__ == "__main__":
    main()
