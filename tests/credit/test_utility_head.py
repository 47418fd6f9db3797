"""The behaviour-utility head: shapes, the stop-gradient into the trunk, reading V and Q, and its loss."""

import functools

import pytest
import torch

from maro_lightning.models import UtilityHead


def test_untrained_head_says_zero_and_keeps_leading_shape():
    head = UtilityHead(hidden_size=12, width=8, depth=2)
    hidden = torch.randn(3, 5, 12)
    out = head(hidden)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros(3, 5))  # zero-initialised output layer: V = Q = 0, no utility yet


def test_depth_and_width_build_the_mlp():
    assert sum(isinstance(m, torch.nn.Linear) for m in UtilityHead(16, width=4, depth=3).modules()) == 4
    probe = UtilityHead(16, depth=0)  # a linear probe on the normalised state
    assert probe.out.in_features == 16
    with pytest.raises(ValueError, match="depth >= 0"):
        UtilityHead(16, depth=-1)


@pytest.mark.parametrize("detach", [True, False])
def test_stop_gradient_into_the_trunk(detach):
    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 6)
    head = UtilityHead(6, width=5, detach_trunk=detach)
    torch.nn.init.normal_(head.out.weight)  # a non-zero head, so gradients can reach the trunk
    head(trunk(torch.randn(2, 3, 4))).sum().backward()
    assert head.out.weight.grad is not None and head.out.weight.grad.abs().sum() > 0
    assert (trunk.weight.grad is None) == detach


def test_behaviour_values_read_the_last_prompt_and_response_tokens():
    torch.manual_seed(0)
    head = UtilityHead(4, width=3)
    torch.nn.init.normal_(head.out.weight)
    hidden = torch.randn(2, 7, 4)  # [B, L, H]
    values, q_values = head.behaviour_values(hidden, torch.tensor([2, 3]), torch.tensor([6, 5]))
    per_position = head(hidden)  # [B, L]
    # The head over gathered rows and over the whole batch multiply matrices of other shapes, which BLAS may sum in
    # another order (this fails torch.equal on some x86 CPUs): equal to float32 rounding, and unlike any other
    # position (they differ by > 1e-3 here).
    close = functools.partial(torch.testing.assert_close, rtol=1e-6, atol=1e-7)
    close(values, per_position[[0, 1], [2, 3]])
    close(q_values, per_position[[0, 1], [6, 5]])
    assert (per_position[:, :, None] - per_position[:, None, :]).abs().add(torch.eye(7) * 1e9).min() > 1e-3
    # Packed: two behaviours in row 1, one in row 0.
    rows = torch.tensor([1, 1, 0])
    values, q_values = head.behaviour_values(hidden, torch.tensor([0, 3, 1]), torch.tensor([2, 6, 4]), rows)
    close(values, per_position[rows, torch.tensor([0, 3, 1])])
    assert q_values.shape == (3,)


def test_low_precision_hidden_states_are_upcast():
    head = UtilityHead(8, width=4)
    assert head(torch.randn(3, 8, dtype=torch.bfloat16)).dtype == torch.float32


def test_loss_by_hand():
    values = torch.tensor([0.5, -1.0], requires_grad=True)
    q_values = torch.tensor([1.0, 0.0])
    targets = torch.tensor([1.0, -1.0])
    # errors: (.5 − 1)² + (1 − 1)² = .25, (−1 + 1)² + (0 + 1)² = 1. Mean over 2 behaviours × 2 points: 1.25/4.
    assert UtilityHead.loss(values, q_values, targets).item() == 0.3125
    # Weights 3 and 1: (3·.25 + 1·1) / (2·4) = 1.75/8.
    assert UtilityHead.loss(values, q_values, targets, torch.tensor([3.0, 1.0])).item() == 0.21875
    empty = torch.zeros(0, requires_grad=True)
    loss = UtilityHead.loss(empty, empty, empty)
    assert loss.item() == 0.0 and loss.requires_grad


def test_a_few_steps_fit_the_outcome():
    torch.manual_seed(0)
    head = UtilityHead(6, width=16)
    hidden, z = torch.randn(32, 6), torch.randint(0, 2, (32,)).float() * 2 - 1
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(50):
        loss = UtilityHead.loss(head(hidden), head(hidden), z)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


def _last_mean_head(detach: bool = True) -> UtilityHead:
    torch.manual_seed(0)
    head = UtilityHead(4, width=3, detach_trunk=detach, inputs="last_mean")
    torch.nn.init.normal_(head.out.weight)
    return head


def test_last_mean_reads_the_state_and_the_mean_of_the_states_up_to_it():
    head = _last_mean_head()
    assert head.body[0].normalized_shape == (8,)  # [h_p, mean h_0..h_p]: twice the hidden size
    hidden = torch.randn(2, 7, 4)  # [B, L, H]
    prompt_last, response_last = torch.tensor([2, 3]), torch.tensor([6, 5])

    def expected(row: int, position: int) -> torch.Tensor:
        return head(torch.cat([hidden[row, position], hidden[row, : position + 1].mean(0)]))

    close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-6)
    values, q_values = head.behaviour_values(hidden, prompt_last, response_last)
    close(values, torch.stack([expected(0, 2), expected(1, 3)]))
    close(q_values, torch.stack([expected(0, 6), expected(1, 5)]))
    rows = torch.tensor([1, 1, 0])  # packed: the mean starts at the row's first token
    values, _ = head.behaviour_values(hidden, torch.tensor([0, 3, 1]), torch.tensor([2, 6, 4]), rows)
    close(values, torch.stack([expected(1, 0), expected(1, 3), expected(0, 1)]))
    later = hidden.clone()
    later[:, 4:] += 10.0  # states after the prompt change Q, never V: the mean looks back only
    changed_values, changed_q = head.behaviour_values(later, prompt_last, response_last)
    close(changed_values, head.behaviour_values(hidden, prompt_last, response_last)[0])
    assert (changed_q - q_values).abs().min() > 1e-3


def test_last_mean_of_low_precision_states_is_taken_in_the_heads_dtype():
    head = _last_mean_head()
    hidden = torch.randn(2, 300, 4)
    positions = torch.tensor([299, 150])
    exact = head.behaviour_values(hidden, positions, positions)[0]
    low = head.behaviour_values(hidden.bfloat16(), positions, positions)[0]
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.05)  # bf16 rounding of the inputs, not of 300 sums


@pytest.mark.parametrize("detach", [True, False])
def test_last_mean_stops_the_gradient_through_the_mean_too(detach):
    head = _last_mean_head(detach)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    values, q_values = head.behaviour_values(hidden, torch.tensor([3]), torch.tensor([4]))
    (values + q_values).sum().backward()
    assert head.out.weight.grad.abs().sum() > 0
    if detach:
        assert hidden.grad is None
    else:
        assert hidden.grad[0, :3].abs().sum() > 0  # reached only through the mean (V and Q read positions 3 and 4)


def test_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="last_mean"):
        UtilityHead(8, inputs="first")
