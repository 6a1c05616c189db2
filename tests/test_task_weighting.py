"""GradNorm against its closed form, and the invariants the paper states."""

import math

import pytest
import torch

from minibert.task_weighting import GradNorm, StaticWeights, Uncertainty


def two_task_network(seed=0):
    torch.manual_seed(seed)
    shared = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 1), torch.nn.Linear(8, 3)])
    x = torch.randn(16, 6)
    y_regression, y_class = torch.randn(16, 1), torch.randint(0, 3, (16,))

    def losses():
        h = shared(x)
        return [torch.nn.functional.mse_loss(heads[0](h), y_regression),
                torch.nn.functional.cross_entropy(heads[1](h), y_class)]
    return shared, heads, losses


def test_weight_gradient_equals_the_closed_form():
    shared, heads, losses = two_task_network()
    W = shared[2].weight
    gradnorm = GradNorm(2, W, alpha=1.5, lr=0.025)
    with torch.no_grad():
        gradnorm.weights.copy_(torch.tensor([0.7, 1.3]))
    first = losses()
    gradnorm.weight_gradient(first)  # records L_i(0)
    later = [first[0] * 0.5, first[1] * 0.9]  # task 0 trains faster than task 1
    got = gradnorm.weight_gradient(later)

    norms = torch.stack([torch.autograd.grad(l, W, retain_graph=True)[0].norm() for l in later])
    G = gradnorm.weights.detach() * norms
    ratios = torch.tensor([0.5, 0.9])
    target = G.mean() * (ratios / ratios.mean()) ** 1.5
    expected = torch.sign(G - target) * norms
    assert torch.allclose(got, expected, atol=1e-6)


def test_the_slower_task_gains_weight():
    """Equal gradient norms, task 1 lagging: its target is larger, so its weight grows."""
    W = torch.nn.Parameter(torch.randn(3, 3))
    gradnorm = GradNorm(2, W, alpha=1.0, lr=0.01)
    base = (W ** 2).sum()
    gradnorm.update([base, base])  # L(0)
    before = gradnorm.current_weights()
    # Loss values 0.5 and 0.9 of the start, gradients unchanged (the offsets are constants).
    gradnorm.update([base - 0.5 * base.detach(), base - 0.1 * base.detach()])
    after = gradnorm.current_weights()
    assert after[1] > before[1] and after[0] < before[0]


def test_weights_stay_positive_and_sum_to_the_number_of_tasks():
    shared, heads, losses = two_task_network()
    gradnorm = GradNorm(2, shared[2].weight, alpha=1.5, lr=0.5)  # a large lr pushes hard
    optimizer = torch.optim.SGD(list(shared.parameters()) + list(heads.parameters()), lr=0.1)
    for _ in range(30):
        task_losses = losses()
        total = gradnorm.combine(task_losses)
        gradnorm.update(task_losses)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        weights = torch.tensor(gradnorm.current_weights())
        assert torch.all(weights > 0)
        assert weights.sum().item() == pytest.approx(2.0, abs=1e-5)


def test_network_gradients_are_those_of_the_plain_weighted_loss():
    """GradNorm's own step must leave no trace in the network's gradients."""
    shared, heads, losses = two_task_network()
    params = list(shared.parameters()) + list(heads.parameters())
    gradnorm = GradNorm(2, shared[2].weight, alpha=1.5, lr=0.025)
    with torch.no_grad():
        gradnorm.weights.copy_(torch.tensor([0.4, 1.6]))
    weights_used = gradnorm.current_weights()
    task_losses = losses()
    total = gradnorm.combine(task_losses)
    gradnorm.update(task_losses)  # changes the weights for the *next* step
    total.backward()
    with_gradnorm = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    plain = StaticWeights(weights_used).combine(losses())
    plain.backward()
    for a, p in zip(with_gradnorm, params):
        assert torch.allclose(a, p.grad, atol=1e-7)
    assert gradnorm.weights.grad is not None and all(p.grad is not None for p in params)


def test_gradnorm_state_round_trip():
    shared, _, losses = two_task_network()
    gradnorm = GradNorm(2, shared[2].weight, alpha=1.5, lr=0.025)
    gradnorm.update(losses())
    again = GradNorm(2, shared[2].weight, alpha=1.5, lr=0.025)
    again.load_state_dict(gradnorm.state_dict())
    assert again.current_weights() == gradnorm.current_weights()
    assert torch.equal(again.initial_losses, gradnorm.initial_losses)


def test_uncertainty_weighting_is_kendall_et_al_form():
    """Written with sigma, as in the paper: a classification term (1/sigma^2) L + log sigma
    (eq. 10), a regression term (1/(2 sigma^2)) L + log sigma (eq. 7). By default every task
    is a classification, as the cross-entropy tasks here are."""
    sigma_squared = [1.0, math.e ** 2]  # log sigma^2 = 0 and 2
    losses = [torch.tensor(3.0), torch.tensor(5.0)]
    classification = [loss.item() / s2 + math.log(math.sqrt(s2)) for loss, s2 in zip(losses, sigma_squared)]
    regression = [loss.item() / (2 * s2) + math.log(math.sqrt(s2)) for loss, s2 in zip(losses, sigma_squared)]
    for forms, terms in ((None, classification), (["classification", "regression"], [classification[0], regression[1]]),
                         (["regression", "regression"], regression)):
        weighting = Uncertainty(2, forms=forms)
        with torch.no_grad():
            weighting.log_variances.copy_(torch.log(torch.tensor(sigma_squared)))
        assert weighting.combine(losses).item() == pytest.approx(sum(terms), rel=1e-6)
    assert Uncertainty(2).current_weights() == [1.0, 1.0]  # 1 / sigma^2 at sigma = 1
    with pytest.raises(ValueError, match="forms"):
        Uncertainty(2, forms=["classification"])


def test_static_weights():
    assert StaticWeights([1.0, 0.5]).combine([torch.tensor(2.0), torch.tensor(4.0)]).item() == 4.0
    with pytest.raises(ValueError):
        StaticWeights([1.0, -1.0])
    with pytest.raises(ValueError):
        GradNorm(1, torch.nn.Parameter(torch.ones(1)), alpha=1.5, lr=0.025)
