"""Multi-gate mixture of experts: gates are distributions, E=1 is the shared model bit for bit,
routing sends each task's gradient only to the experts it picked, gradcheck on the gate."""

import copy

import pytest
import torch

from minibert.heads import SentenceClassificationHead, TokenClassificationHead
from minibert.mixture import TaskGate, route
from minibert.transformer_with_heads import TransformerWithHeads

from conftest import BATCH, SEQ, odd_config, random_batch


def two_task_model(**overrides):
    config = odd_config(**overrides)
    torch.manual_seed(0)
    model = TransformerWithHeads(config)
    model.add_head("papers", SentenceClassificationHead(config, 5))
    model.add_head("entities", TokenClassificationHead(config, 6))
    return model


def test_gates_are_distributions_per_example_and_shapes_hold():
    model = two_task_model()
    model.add_mixture(num_experts=3, expert_layers=1, tasks=["papers", "entities"])
    input_ids, attention_mask, _ = random_batch(model.config)
    outputs = model(input_ids, attention_mask)
    assert outputs["papers"].shape == (BATCH, 5) and outputs["entities"].shape == (BATCH, SEQ, 6)
    for task in ("papers", "entities"):
        gates = model.mixture.last_gates[task]
        assert gates.shape == (BATCH, 3)
        assert (gates >= 0).all() and torch.allclose(gates.sum(-1), torch.ones(BATCH))
    assert len(model.encoder.layers) == 1 and len(model.mixture.experts[0]) == 1


def test_one_expert_is_the_shared_model_bit_for_bit(tmp_path):
    shared = two_task_model().eval()
    mixed = copy.deepcopy(shared)
    mixed.add_mixture(num_experts=1, expert_layers=1, tasks=["papers", "entities"])
    mixed.eval()
    input_ids, attention_mask, _ = random_batch(shared.config)
    expected, got = shared(input_ids, attention_mask), mixed(input_ids, attention_mask)
    for task in ("papers", "entities"):
        assert torch.equal(expected[task], got[task]), task
    # and it survives save_pretrained / from_pretrained
    mixed.save_pretrained(tmp_path)
    reloaded = TransformerWithHeads.from_pretrained(tmp_path).eval()
    assert reloaded.mixture is not None and len(reloaded.encoder.layers) == 1
    assert torch.equal(reloaded(input_ids, attention_mask)["entities"], got["entities"])


def expert_has_gradient(model):
    return [any(p.grad is not None and p.grad.abs().sum() > 0 for p in expert.parameters())
            for expert in model.mixture.experts]


@pytest.mark.parametrize("top_k", [1, 2])
def test_routing_sends_each_task_gradient_only_to_its_experts(top_k):
    model = two_task_model()
    model.add_mixture(num_experts=4, expert_layers=1, tasks=["papers", "entities"], top_k=top_k)
    with torch.no_grad():  # make the gates prefer known experts whatever the input
        model.mixture.gates["papers"].linear.bias.copy_(torch.tensor([9.0, -9.0, 8.0, -9.0]))
        model.mixture.gates["entities"].linear.bias.copy_(torch.tensor([-9.0, 9.0, -9.0, 8.0]))
    input_ids, attention_mask, _ = random_batch(model.config)
    labels = torch.randint(0, 5, (BATCH,))
    loss, _ = model(input_ids, attention_mask, head="papers", labels=labels)
    loss.backward()
    used = [True, False, False, False] if top_k == 1 else [True, False, True, False]
    assert expert_has_gradient(model) == used
    assert model.mixture.gates["entities"].linear.weight.grad is None  # the other task's gate is untouched
    assert model.mixture.gates["papers"].linear.weight.grad.abs().sum() > 0  # top-1 still trains its gate
    model.zero_grad(set_to_none=True)
    labels = torch.randint(0, 6, (BATCH, SEQ))
    model(input_ids, attention_mask, head="entities", labels=labels)[0].backward()
    assert expert_has_gradient(model) == ([False, True, False, False] if top_k == 1 else [False, True, False, True])


def test_dense_gates_reach_every_expert():
    model = two_task_model()
    model.add_mixture(num_experts=3, expert_layers=2, tasks=["papers", "entities"])
    input_ids, attention_mask, _ = random_batch(model.config)
    model(input_ids, attention_mask, head="papers", labels=torch.randint(0, 5, (BATCH,)))[0].backward()
    assert expert_has_gradient(model) == [True, True, True]
    assert len(model.encoder.layers) == 0  # every layer is an expert: only the embeddings are shared


def test_route_keeps_the_top_experts():
    p = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert torch.equal(route(p, 0), p)
    assert torch.allclose(route(p, 1), torch.tensor([[0.0, 0.6, 0.0], [0.5, 0.0, 0.0]]))
    assert torch.allclose(route(p, 2), torch.tensor([[0.0, 2 / 3, 1 / 3], [0.625, 0.0, 0.375]]))


def test_gradcheck_gate_and_mixture():
    gate = TaskGate(8, 3).double()
    x = torch.randn(4, 5, 8, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    assert torch.autograd.gradcheck(lambda h: gate(h, mask), (x,))
    model = two_task_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.add_mixture(num_experts=2, expert_layers=1, tasks=["papers", "entities"], top_k=0)
    mixture = model.mixture.double()
    h = torch.randn(3, 4, 32, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: mixture(h, mask[:3, :4], "entities"), (h,))


def test_load_balancing_loss_is_one_when_uniform_and_E_when_collapsed():
    model = two_task_model()
    mixture = model.add_mixture(num_experts=4, expert_layers=1, tasks=["papers", "entities"])
    mixture.last_gates["papers"] = torch.eye(4).repeat(2, 1)  # each expert gets a quarter
    assert mixture.load_balancing_loss("papers").item() == pytest.approx(1.0)
    mixture.last_gates["papers"] = torch.tensor([[1.0, 0, 0, 0]] * 8)
    assert mixture.load_balancing_loss("papers").item() == pytest.approx(4.0)


def test_bad_mixture_settings():
    model = two_task_model()
    with pytest.raises(ValueError, match="expert_layers"):
        model.add_mixture(num_experts=2, expert_layers=3, tasks=["papers"])
    with pytest.raises(ValueError, match="top_k"):
        model.add_mixture(num_experts=2, expert_layers=1, tasks=["papers"], top_k=3)
    model.add_mixture(num_experts=2, expert_layers=1, tasks=["papers"])
    input_ids, attention_mask, _ = random_batch(model.config)
    with pytest.raises(ValueError, match="no gate for task 'entities'"):
        model(input_ids, attention_mask, head="entities")
    with pytest.raises(ValueError, match="task="):
        model.get_encoder_output(input_ids, attention_mask)
    with pytest.raises(ValueError, match="already"):
        model.add_mixture(num_experts=2, expert_layers=1, tasks=["papers"])
