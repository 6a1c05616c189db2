"""How much each task's loss counts in a multi-task step: L = sum_i w_i * L_i.

Three ways to choose the w_i, all with the same two calls per step:

    total = weighting.combine(losses)   # the loss to backpropagate into the network
    weighting.update(losses)            # adapt the weights (no-op for static weights)

StaticWeights -- fixed w_i, chosen by hand (--weights).
GradNorm      -- Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss
                 Balancing in Deep Multitask Networks". Tunes w_i so that each task's
                 gradient on the last shared layer has a size proportional to how slowly
                 that task is training.
Uncertainty   -- Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to
                 Weigh Losses". Learns a noise scale per task; noisy tasks count less.
"""

import torch


class StaticWeights:

    def __init__(self, weights):
        self.weights = torch.as_tensor(weights, dtype=torch.float32)
        if (self.weights < 0).any():
            raise ValueError(f"task weights must be non-negative, got {self.weights.tolist()}")

    def combine(self, losses):
        return sum(w * loss for w, loss in zip(self.weights.tolist(), losses))

    def update(self, losses, loss_scale=1.0):
        return {}

    def current_weights(self):
        return self.weights.tolist()

    def state_dict(self):
        return {"weights": self.weights}

    def load_state_dict(self, state):
        self.weights = state["weights"]


class GradNorm:
    """GradNorm as the paper defines it (section 3.2), step by step:

    G_i    = || d(w_i L_i) / dW ||_2      gradient norm of task i's weighted loss on W, the
                                           last shared layer's weights;  G_bar = mean_i G_i
    Lt_i   = L_i(t) / L_i(0)              loss ratio: the inverse training rate
    r_i    = Lt_i / mean_j Lt_j           relative inverse training rate
    target_i = G_bar * r_i ** alpha       treated as a constant (no gradient flows into it)
    L_grad = sum_i | G_i - target_i |     differentiated with respect to the w_i only

    Since G_i = w_i ||dL_i/dW|| (w_i > 0), dL_grad/dw_i = sign(G_i - target_i) ||dL_i/dW||:
    a task whose gradient is larger than its target gets a smaller weight. The network
    itself is trained on sum_i w_i L_i with the weights held fixed, so no second-order
    gradient reaches it; after each step the weights are renormalised to sum to the
    number of tasks.

    A larger alpha pulls the tasks' training rates together harder; alpha = 0 asks only
    for equal gradient norms.
    """

    def __init__(self, num_tasks, shared_weight, alpha, lr, reduce=None):
        """alpha, lr (the Adam step of the weights): no default here; train_mtl.py's DEFAULTS
        (gradnorm_alpha, gradnorm_lr) is the one place they are set. The paper found alpha
        between 0.5 and 3 to work, 1.5 on NYUv2.
        reduce: under data parallelism, a function that averages a tensor across the
        processes. Each process holds part of the batch, so its own gradient on W and its
        own loss values are only a share; torch.autograd.grad bypasses DDP's gradient
        averaging, so GradNorm averages explicitly, before taking norms (the norm of the
        average, which is the one-process norm; not the average of the norms). Every rank
        then computes the same weights, and the ranks' models stay identical."""
        if num_tasks < 2:
            raise ValueError("GradNorm balances at least two tasks")
        self.num_tasks, self.shared_weight, self.alpha = num_tasks, shared_weight, alpha
        self.reduce = reduce or (lambda tensor: tensor)
        # On W's device: the weights meet W's gradient norms in every update.
        self.weights = torch.ones(num_tasks, device=shared_weight.device, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)
        self.initial_losses = None
        self.last = {}

    def combine(self, losses):
        # A copy, held fixed: no gradient flows to w, and update() may change w before backward.
        return sum(w * loss for w, loss in zip(self.weights.detach().clone(), losses))

    def task_gradient_norms(self, losses, loss_scale=1.0):
        """||dL_i/dW|| for each task, unweighted, in float32 (W's dtype). retain_graph: the
        network's own backward pass still needs the graph; no create_graph: these norms are
        constants for w. loss_scale: with float16 autocast, small gradients would underflow
        in the backward pass, so the loss is scaled up first (by the GradScaler's factor) and
        the gradient scaled back down."""
        norms = []
        for loss in losses:
            (gradient,) = torch.autograd.grad(loss * loss_scale, self.shared_weight, retain_graph=True)
            norms.append(self.reduce(gradient.float() / loss_scale).norm())
        return torch.stack(norms)

    def weight_gradient(self, losses, gradient_norms=None, loss_scale=1.0):
        """dL_grad/dw, computed through autograd on L_grad (the closed form is the test)."""
        if gradient_norms is None:
            gradient_norms = self.task_gradient_norms(losses, loss_scale)
        loss_values = self.reduce(torch.stack([loss.detach().float() for loss in losses]))
        if self.initial_losses is None:
            self.initial_losses = loss_values.clone()
        loss_ratios = loss_values / self.initial_losses  # (num_tasks,)
        relative_rates = loss_ratios / loss_ratios.mean()  # (num_tasks,)
        weighted_norms = self.weights * gradient_norms  # (num_tasks,) G_i, a function of w only
        target = (weighted_norms.mean() * relative_rates ** self.alpha).detach()  # (num_tasks,) a constant
        grad_loss = (weighted_norms - target).abs().sum()
        (gradient,) = torch.autograd.grad(grad_loss, self.weights)
        # Kept as tensors: reading them (.item()) would make the GPU wait for every step.
        self.last = {"grad_loss": grad_loss.detach(), "gradient_norms": gradient_norms.detach(),
                     "relative_rates": relative_rates.detach()}
        return gradient

    def update(self, losses, loss_scale=1.0):
        """One GradNorm step on the weights; call before the network's backward pass."""
        gradient = self.weight_gradient(losses, loss_scale=loss_scale)
        if loss_scale != 1.0 and not torch.isfinite(gradient).all():  # float16 overflow: the scaler skips this step too
            return self.last
        self.optimizer.zero_grad(set_to_none=True)
        self.weights.grad = gradient
        self.optimizer.step()
        with torch.no_grad():
            # Keep every task switched on (a weight at or below zero would stop its task, or
            # reverse it), then rescale so the weights sum to num_tasks and the total learning rate
            # of the network stays what it was.
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        return self.last

    def current_weights(self):
        return self.weights.detach().tolist()

    def state_dict(self):
        return {"weights": self.weights.detach().clone(), "optimizer": self.optimizer.state_dict(),
                "initial_losses": self.initial_losses}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.initial_losses = state["initial_losses"]


class Uncertainty(torch.nn.Module):
    """L = sum_i c_i * exp(-s_i) * L_i + s_i / 2, with s_i = log sigma_i^2 learned.

    Kendall et al. derive each task's term from its likelihood, so the factor c_i depends
    on the kind of loss (section 3.2, written with s = log sigma^2, so 1/sigma^2 = exp(-s)
    and log sigma = s/2):

      "classification"  c = 1:    (1/sigma^2) L + log sigma       (eq. 10, the softmax term;
                                  cross-entropy, so sentence classification and tagging)
      "regression"      c = 1/2:  (1/(2 sigma^2)) L + log sigma   (eq. 7, a Gaussian; squared error)

    The exp(-s_i) factor lets a task's loss be scaled down; the s_i / 2 term stops every
    sigma from growing without bound. Learning log sigma^2 rather than sigma keeps it
    positive and the optimisation stable. The s_i are trained with the network, by the
    same optimizer: add `weighting.parameters()` to it. The effective weight of task i is
    c_i * exp(-s_i).
    """

    FACTORS = {"classification": 1.0, "regression": 0.5}

    def __init__(self, num_tasks, device=None, forms=None):
        """forms: one of FACTORS per task; by default every task is a classification (the
        multi-task tasks here are all cross-entropy losses)."""
        super().__init__()
        forms = list(forms) if forms is not None else ["classification"] * num_tasks
        if len(forms) != num_tasks or any(form not in self.FACTORS for form in forms):
            raise ValueError(f"forms must name {num_tasks} of {list(self.FACTORS)}, got {forms}")
        self.forms = forms
        self.log_variances = torch.nn.Parameter(torch.zeros(num_tasks, device=device))
        # Not state: a checkpoint holds the log-variances only, the forms come with the constructor.
        self.register_buffer("factors", torch.tensor([self.FACTORS[form] for form in forms], device=device),
                             persistent=False)

    def combine(self, losses):
        return sum(c * torch.exp(-s) * loss + 0.5 * s for c, s, loss in zip(self.factors, self.log_variances, losses))

    def update(self, losses, loss_scale=1.0):
        return {}

    def current_weights(self):
        return (self.factors * torch.exp(-self.log_variances.detach())).tolist()
