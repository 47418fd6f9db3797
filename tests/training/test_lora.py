"""LoRA through peft (docs/design.md#lora) on the tiny model, saved as a Hugging Face folder to be the pretrained base:
only the adapters (and the head) train, the KL reference is the base with the adapters disabled, frozen opponents and
checkpoints hold the adapters only, a resumed run is exact, and the merged export reloads through ``load_policy``."""

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import RecordLosses
from helpers import data
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint

from maro_lightning import checkpoints
from maro_lightning import lora
from maro_lightning.lora import AdapterSnapshot
from maro_lightning.lora import LoraConfig
from maro_lightning.lora import adapter_parameters
from maro_lightning.models import load_policy
from maro_lightning.module import OPPONENT
from maro_lightning.module import REFERENCE
from maro_lightning.module import MaroModule
from maro_lightning.rollout.league import LeagueConfig
from maro_lightning.scoring import response_logprobs

pytest.importorskip("peft", reason="LoRA needs peft: pip install 'maro-lightning[lora]'")

MAX_STEPS = 4  # rounds at steps 0 (the warm start), 2 and 4; a checkpoint every 2 steps


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
        yield


@pytest.fixture(scope="module")
def base(tmp_path_factory, hf_home):
    """The pretrained base: a tiny model exported as a folder."""
    folder = tmp_path_factory.mktemp("base")
    L.seed_everything(0, verbose=False)
    module = tiny_module()
    module.configure_model()
    module.save_pretrained(str(folder))
    return folder


def fit(base, root, ckpt_path=None):
    """A LoRA run with a warm start, a KL reference and a league of two frozen opponents."""
    L.seed_everything(0, verbose=False)
    module = tiny_module(policy=str(base), attn_implementation="eager", lora=LoraConfig(r=4))
    sim = simulation(imitation_rounds=1, opponent_refresh=1, rollout_every=2, league=LeagueConfig(2))
    record = RecordLosses()
    saves = ModelCheckpoint(dirpath=root, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    trainer = L.Trainer(max_steps=MAX_STEPS, callbacks=[sim, record, saves], **{**QUIET, "enable_checkpointing": True})
    trainer.fit(module, datamodule=data(batch_size=4), ckpt_path=ckpt_path)
    return trainer, module, sim, record


@pytest.fixture(scope="module")
def run(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return root, *fit(base, root)


def adapter(module):
    return {name: p.detach().clone() for name, p in adapter_parameters(module.policy).items()}


def test_only_the_adapters_and_the_head_train(base, run):
    _, trainer, module, _, record = run
    fresh = load_policy(str(base), dtype="float32", attn_implementation="eager")[0].state_dict()
    base_weights = module.policy.get_base_model().state_dict()
    frozen = {name.replace(".base_layer", ""): w for name, w in base_weights.items() if "lora_" not in name}
    assert frozen.keys() == fresh.keys() and all(torch.equal(frozen[k], fresh[k]) for k in fresh)  # base untouched
    weights = adapter(module)
    assert weights and all("lora_" in name for name in weights)
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)  # B starts at 0: it trained
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    trainable = [*adapter_parameters(module.policy).values(), *module.utility_head.parameters()]
    assert optimized == {id(p) for p in trainable}
    assert record.losses and all(torch.isfinite(torch.tensor(record.losses)))


def test_the_reference_is_the_base_and_snapshots_hold_the_adapters(base, run):
    _, trainer, module, sim, _ = run
    assert REFERENCE not in module.snapshots  # no second copy of the model
    base_model = load_policy(str(base), dtype="float32", attn_implementation="eager")[0]
    samples = trainer.datamodule.rounds[-1][:8]  # the last round's, scored with the adapters of its time
    pairs = [(s.prompt_ids.tolist(), s.response_ids.tolist()) for s in samples]
    with torch.no_grad():
        expected = response_logprobs(base_model, pairs, module.pad_id, module.temperature)[1]
        adapted = response_logprobs(module.policy, pairs, module.pad_id, module.temperature)[1]
    for sample, reference, policy in zip(samples, expected, adapted, strict=True):
        torch.testing.assert_close(sample.ref_logprobs, reference)  # the base, though the adapters have trained
        assert not torch.allclose(policy, reference)  # and the adapters are on again
    opponent, weights = module.snapshots[OPPONENT], adapter(module)
    assert isinstance(opponent, AdapterSnapshot) and opponent.state_dict().keys() == weights.keys()
    assert all(m.weights.keys() == weights.keys() for m in sim.league.members)
    other = AdapterSnapshot({name: torch.zeros_like(w) for name, w in weights.items()})
    with other.swapped_into(module.policy):
        assert all(p.abs().sum() == 0 for p in adapter_parameters(module.policy).values())
    assert all(torch.equal(p, weights[name]) for name, p in adapter_parameters(module.policy).items())  # restored


def test_checkpoints_hold_the_adapters_and_a_resumed_run_is_exact(base, run, tmp_path):
    root, _, straight, straight_sim, straight_losses = run
    saved = checkpoints.load(root / "step=2.ckpt")
    assert saved["hyper_parameters"]["policy"] == str(base) and saved["hyper_parameters"]["lora"]["r"] == 4
    assert all("lora_" in k or k.startswith("utility_head.") for k in saved["state_dict"])  # no base weights
    assert all("lora_" in k for k in saved["maro"]["snapshots"][OPPONENT])
    assert sum(m.games for m in straight_sim.league.members) > 0  # frozen seats played through the snapshot
    trainer, resumed, resumed_sim, resumed_losses = fit(base, tmp_path, ckpt_path=root / "step=2.ckpt")
    assert trainer.global_step == MAX_STEPS and resumed_losses.losses == straight_losses.losses[2:]
    straight_weights, resumed_weights = adapter(straight), adapter(resumed)
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)
    for name, tensor in straight.snapshots[OPPONENT].state_dict().items():
        assert torch.equal(tensor, resumed.snapshots[OPPONENT].state_dict()[name])
    assert [m.id for m in straight_sim.league.members] == [m.id for m in resumed_sim.league.members]
    loaded = MaroModule.load_from_checkpoint(root / f"step={MAX_STEPS}.ckpt", map_location="cpu")  # play, evaluate
    assert all(torch.equal(w, straight_weights[k]) for k, w in adapter(loaded).items())


def test_the_merged_export_reloads_with_the_adapted_logits(run, tmp_path):
    module = run[2]
    before = adapter(module)
    module.save_pretrained(str(tmp_path / "merged"))
    merged, tokenizer = load_policy(str(tmp_path / "merged"), dtype="float32", attn_implementation="eager")
    assert not any("lora_" in name for name in merged.state_dict())
    ids = torch.tensor([tokenizer("[Offer: $92] S L=100")["input_ids"]])
    module.policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, module.policy(input_ids=ids).logits)
    assert all(torch.equal(w, before[k]) for k, w in adapter(module).items())  # the policy keeps its adapters


def test_vllm_is_served_the_merged_weights_of_the_policy_and_of_a_snapshot(run):
    """What a vLLM engine loads under LoRA: the merged export's state dict, entry for entry; a snapshot's merged
    weights through the policy, which keeps its own adapter after."""
    module = run[2]
    before = adapter(module)
    expected = lora.merged_copy(module.policy).state_dict()
    served = dict(module.rollout_weights(module.policy))
    assert served.keys() == expected.keys()
    assert all(torch.allclose(served[name], expected[name], atol=1e-6) for name in expected)
    snapshot = module.snapshot(OPPONENT)
    with snapshot.swapped_into(module.policy):
        expected_snapshot = lora.merged_copy(module.policy).state_dict()
    served_snapshot = dict(module.rollout_weights(snapshot))
    assert all(torch.allclose(served_snapshot[k], expected_snapshot[k], atol=1e-6) for k in expected_snapshot)
    assert any(not torch.equal(served[k], served_snapshot[k]) for k in expected)  # two different adapters
    assert all(torch.equal(w, before[k]) for k, w in adapter(module).items())


def test_lora_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="need r >= 1"):
        LoraConfig(r=0)
    with pytest.raises(ValueError, match="0 <= dropout < 1"):
        LoraConfig(dropout=1.0)
    with pytest.raises(ValueError, match="target_modules is empty"):
        LoraConfig(target_modules=())
    with pytest.raises(ValueError, match="needs a pretrained model.policy"):
        tiny_module(lora=LoraConfig())
