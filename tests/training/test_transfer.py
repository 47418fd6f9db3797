"""`maro transfer`: a checkpoint's policy, exported as a Hugging Face folder, on an lm-evaluation-harness task
(a local multiple-choice task over a JSONL file, offline), against the policy it started from; one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import data
from helpers import simulation
from helpers import tiny_module

from maro_lightning import transfer
from maro_lightning.cli import main
from maro_lightning.models import load_policy

# Questions in the tiny model's words; "+", "price" and "zebra" are not in its vocabulary and read as <unk>.
ITEMS = [
    ("S L=100 [Offer: $80]", ["[Accept]", "[Reject]"], 0),
    ("1 + 2 =", ["3", "4"], 0),
    ("2 + 2 =", ["3", "4"], 1),
    ("the price is", ["90", "zebra"], 0),
]
TASK = "tiny_choice"


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def local_task(folder: Path) -> Path:
    """A folder holding a multiple-choice task YAML over a JSONL file (read by the `json` datasets builder, cached in
    the folder: `datasets` may have fixed its cache under the real HF_HOME before this test set it)."""
    folder.mkdir()
    rows = folder / "items.jsonl"
    rows.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in ITEMS))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  cache_dir: {folder / 'cache'}\n  data_files:\n    test: {rows}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
    return folder


def trained(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    """A one-step `fit` checkpoint in Lightning's run layout, the untrained policy it started from (exported as a
    Hugging Face folder: the base) and the trained module."""
    L.seed_everything(0, verbose=False)
    module, base = tiny_module(), tmp_path / "base"
    module.configure_model()
    module.save_pretrained(str(base))
    trainer = L.Trainer(max_steps=1, callbacks=[simulation()], **QUIET)
    trainer.fit(module, datamodule=data())
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    return checkpoint, base, module


def test_transfer_evaluates_the_exported_policy_against_its_base(tmp_path, capsys):
    pytest.importorskip("lm_eval", reason="needs lm-eval: the transfer extra")
    checkpoint, base, module = trained(tmp_path)
    tasks = local_task(tmp_path / "tasks")
    argv = ["--checkpoint", str(checkpoint), "--tasks", TASK, "--include_path", str(tasks), "--base", str(base)]
    assert main(["transfer", *argv, "--device", "cpu", "--batch_size", "4"]) == 0

    out = tmp_path / "run" / "transfer" / "last"  # beside the run, named by the checkpoint
    results = json.loads((out / transfer.RESULTS).read_text())
    base_results = json.loads((out / transfer.BASE_RESULTS).read_text())
    score, base_score = results["results"][TASK]["acc,none"], base_results["results"][TASK]["acc,none"]
    assert 0 <= score <= 1 and 0 <= base_score <= 1
    assert results["n-samples"][TASK]["effective"] == len(ITEMS)
    assert results["config"]["model_args"] == {"pretrained": str(out / transfer.EXPORT)}
    table = capsys.readouterr().out
    assert table.startswith(f"base: {base}\n") and f"| {TASK} | acc | 0 | {score:.4f} ± " in table
    assert f"| {base_score:.4f} ± " in table and f"| {score - base_score:+.4f} |" in table
    assert (out / transfer.TABLE).read_text() in table

    model, tokenizer = load_policy(str(out / transfer.EXPORT), dtype="float32", attn_implementation="eager")
    text = ITEMS[0][0]
    assert tokenizer(text)["input_ids"] == module.tokenizer(text)["input_ids"]
    ids = torch.tensor([module.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, module.policy(input_ids=ids).logits)


def readable_checkpoint(tmp_path: Path) -> Path:
    """A file that reads as a Lightning checkpoint (never loaded into a module: these runs stop before)."""
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, checkpoint)
    return checkpoint


def test_an_unknown_task_fails_in_one_line_before_the_export(tmp_path, capsys):
    pytest.importorskip("lm_eval", reason="needs lm-eval: the transfer extra")
    checkpoint = readable_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", "--checkpoint", str(checkpoint), "--tasks", "gsm8k,no_such_task"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "maro transfer: error: lm-eval: Tasks not found: no_such_task (your own task YAMLs: --include_path)"
    assert not (tmp_path / "run" / "transfer").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.ckpt", "--tasks", "gsm8k"], "missing.ckpt: no such file"),
        (["--checkpoint", "missing.ckpt", "--tasks", ","], "need tasks"),
        (["--checkpoint", "missing.ckpt", "--tasks", "gsm8k", "--limit", "0"], "--limit > 0"),
    ],
)
def test_bad_arguments_fail_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("maro transfer: error: ") and message in err and err.count("\n") == 1


def test_without_lm_eval_the_command_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what `import lm_eval` meets when it is not installed
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", "--checkpoint", str(readable_checkpoint(tmp_path)), "--tasks", "gsm8k"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "maro transfer: error: lm-eval is not installed; it comes with the transfer extra: "
        'pip install "maro-lightning[transfer]"\n'
    )


def group_results(value: float, with_exact_match: bool = True) -> dict:
    """lm-eval's results for a group of two tasks (their shape as lm-eval 0.4.13 writes them)."""
    task = {"alias": "t", "sample_len": 4, "acc,none": value, "acc_stderr,none": 0.25}
    group = {**task, "alias": "g", "sample_count": {"acc,none": 8}}
    if with_exact_match:
        group |= {"exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": "N/A"}
    return {"results": {"t1": task, "t2": task, "g": group}, "group_subtasks": {"g": ["t1", "t2"]}, "n-shot": {"g": 5}}


def test_the_table_shows_the_groups_asked_for_and_the_difference_where_both_have_the_metric():
    table = transfer.format_table("last", group_results(0.75), group_results(0.5, with_exact_match=False), "Qwen/x")
    assert table.splitlines() == [
        "base: Qwen/x",
        "",
        "| task | metric | n-shot | last | base | Δ |",
        "| --- | --- | --- | --- | --- | --- |",
        "| g | acc | 5 | 0.7500 ± 0.2500 | 0.5000 ± 0.2500 | +0.2500 |",
        "| g | exact_match (strict-match) | 5 | 0.5000 | - | - |",
    ]
