"""Transfer evaluation (``maro transfer``): a trained policy on standard benchmarks, through lm-evaluation-harness.

The checkpoint's policy is exported as a Hugging Face folder (:meth:`MaroModule.save_pretrained`) and lm-eval's
``hf`` model evaluates that folder; a base model (a Hugging Face id or folder) can be evaluated on the same tasks,
and the table then gives the difference. lm-eval is an optional dependency: ``pip install "maro-lightning[transfer]"``.

lm-eval runs through its Python API (``lm_eval.simple_evaluate``), not its command line, because the tokenizer must
be handed over as an object: the command line can only name one for ``AutoTokenizer``, which loads the tiny model's
exported word-level tokenizer as Qwen2's and would split every text differently
(:func:`maro_lightning.models.load_tokenizer`). In the same process lm-eval's errors also arrive as exceptions, told
in one line, and its results as a dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = 'pip install "maro-lightning[transfer]"'
EXPORT = "model"  # the exported Hugging Face folder, inside the output folder
RESULTS, BASE_RESULTS, TABLE = "results.json", "base_results.json", "results.md"


@dataclass(frozen=True)
class Harness:
    """What lm-eval is asked: task names (or task YAML files) and its run options, passed through as given."""

    tasks: tuple[str, ...]
    num_fewshot: int | None = None
    """Examples in each prompt's few-shot context (None: each task's own)."""
    limit: float | None = None
    """At most this many examples per task (below 1: this fraction of them); None: all."""
    batch_size: str | None = None
    """An integer or ``auto``/``auto:N`` (None: lm-eval's default, 1)."""
    device: str | None = None
    """None: CUDA when available, else the CPU."""
    include_path: tuple[str, ...] = ()
    """Folders of task YAMLs searched besides lm-eval's own."""


def run(checkpoint: str, harness: Harness, base: str | None = None, out: str | None = None) -> tuple[str, list[Path]]:
    """Export the policy of ``checkpoint``, evaluate it (and ``base``) on the tasks and write the results.

    Returns the table and the written paths (the export folder, ``results.json``, ``base_results.json`` with
    ``base``, and the table as Markdown), all in ``out`` (default :func:`output_folder`).

    Raises:
        ValueError: lm-eval is missing, the checkpoint unreadable, a task unknown or lm-eval failed (one line).
    """
    from maro_lightning import checkpoints
    from maro_lightning.models import check_policy_name

    checkpoints.load(checkpoint, mmap=True)  # a remote, missing or unreadable file fails here, before any work
    require_lm_eval()
    if base is not None:
        check_policy_name(base)
    manager = task_manager(harness)
    folder = Path(out) if out else output_folder(checkpoint)
    model = export_policy(checkpoint, folder / EXPORT)
    results = {RESULTS: evaluate(str(model), harness, manager)}
    if base is not None:
        results[BASE_RESULTS] = evaluate(base, harness, manager)
    table = format_table(Path(checkpoint).stem, results[RESULTS], results.get(BASE_RESULTS), base)
    written = [_write_json(folder / name, result) for name, result in results.items()]
    (folder / TABLE).write_text(table + "\n")
    return table, [model, *written, folder / TABLE]


def require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ValueError(f"lm-eval is not installed; it comes with the transfer extra: {INSTALL_HINT}") from None


def output_folder(checkpoint: str | Path) -> Path:
    """``<run dir>/transfer/<checkpoint stem>``: the run dir holds ``checkpoints/`` (Lightning's ``version_N``);
    a checkpoint elsewhere counts its own folder as the run dir."""
    path = Path(checkpoint)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run_dir / "transfer" / path.stem


def task_manager(harness: Harness) -> Any:
    """lm-eval's task index with the ``include_path`` folders; every task must be in it (or be a YAML file)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=list(harness.include_path) or None)
    missing = [task for task in harness.tasks if not manager.match_tasks([task]) and not Path(task).is_file()]
    if missing:  # lm-eval's own words for it, before the export
        raise ValueError(f"lm-eval: Tasks not found: {', '.join(missing)} (your own task YAMLs: --include_path)")
    return manager


def export_policy(checkpoint: str | Path, folder: Path) -> Path:
    """The checkpoint's policy and tokenizer as a Hugging Face folder (``models.load_policy`` reads it back)."""
    from maro_lightning.module import MaroModule

    MaroModule.load_from_checkpoint(checkpoint, map_location="cpu").save_pretrained(str(folder))
    return folder


def evaluate(model: str, harness: Harness, manager: Any) -> dict[str, Any]:
    """lm-eval's results for the Hugging Face folder or id ``model`` (its ``hf`` model, with our tokenizer)."""
    import lm_eval

    from maro_lightning.models import load_tokenizer

    try:
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": model, "tokenizer": load_tokenizer(model)},
            tasks=list(harness.tasks),
            num_fewshot=harness.num_fewshot,
            limit=harness.limit,
            batch_size=harness.batch_size,
            device=harness.device,
            task_manager=manager,
            log_samples=False,
        )
    except Exception as err:  # noqa: BLE001 - lm-eval, datasets and the hub fail with many exception types
        raise ValueError(f"lm-eval on {model}: {type(err).__name__}: {_first_line(err)}") from None
    results["config"]["model_args"] = {"pretrained": model}  # the tokenizer object has no JSON form
    return results


def scores(results: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """``(task, "metric,filter") -> (value, stderr)`` of the tasks and groups asked for (a group's subtasks are
    left to the results file)."""
    nested = {task for subtasks in results.get("group_subtasks", {}).values() for task in subtasks}
    found = {}
    for task, metrics in results["results"].items():
        if task in nested:
            continue
        for key, value in metrics.items():
            metric, _, kept = key.partition(",")
            if kept and not metric.endswith("_stderr"):  # `alias`, `name`, `sample_len` have no filter
                found[(task, key)] = (value, metrics.get(f"{metric}_stderr,{kept}"))
    return found


def format_table(name: str, results: dict[str, Any], base: dict[str, Any] | None, base_name: str | None) -> str:
    """A Markdown table, a row per task and metric: ``name``'s score ± lm-eval's standard error and, with ``base``,
    the base's and the difference ``name − base`` (on the same examples)."""
    header = ["task", "metric", "n-shot", name] + (["base", "Δ"] if base else [])
    rows = []
    base_scores = scores(base) if base else {}
    for (task, key), (value, stderr) in scores(results).items():
        row = [task, _metric(key), str(results.get("n-shot", {}).get(task, "")), _score(value, stderr)]
        if base:
            other = base_scores.get((task, key))
            row += [_score(*other), _delta(value, other[0])] if other else ["-", "-"]
        rows.append(row)
    lines = [_row(header), _row(["---"] * len(header)), *map(_row, rows)]
    return "\n".join(([f"base: {base_name}", ""] if base else []) + lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _metric(key: str) -> str:
    """``acc,none`` -> ``acc``; ``exact_match,strict-match`` -> ``exact_match (strict-match)``."""
    metric, _, kept = key.partition(",")
    return metric if kept == "none" else f"{metric} ({kept})"


def _score(value: Any, stderr: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    return f"{value:.4f} ± {stderr:.4f}" if isinstance(stderr, int | float) else f"{value:.4f}"


def _delta(value: Any, other: Any) -> str:
    numbers = isinstance(value, int | float) and isinstance(other, int | float)
    return f"{value - other:+.4f}" if numbers else "-"


def _write_json(path: Path, results: dict[str, Any]) -> Path:
    from lm_eval.utils import handle_non_serializable  # dtypes and numpy numbers, as lm-eval writes them

    path.write_text(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n")
    return path


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else "no detail"
