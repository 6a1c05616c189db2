"""Multi-task training as three plain loops, to read and to step through:

    frozen_heads     the backbone frozen, each head trained on its own task
    joint_static     backbone and heads trained on sum_i w_i L_i with fixed weights
    joint_gradnorm   the same, with the weights adapted by GradNorm (Chen et al. 2018)

No data parallelism, resuming, logging or evaluation: train_mtl.py wraps those around the
same steps, and tests/test_mtl.py checks that each loop here ends with the weights
train_mtl.py ends with for the same seed, data and steps. `tasks` are loaded tasks
(minibert/tasks.py) whose heads the model already has; task i draws its batches from seed + i.
"""

import numpy as np
import torch

from .pretraining_data import batch_at
from .tasks import Features
from .training import learning_rate_at, optimizer_groups, set_learning_rate


def frozen_heads(model, tasks, steps, batch_size=16, learning_rate=1e-3, warmup_fraction=0.1, seed=1337):
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    # The backbone never changes, so its output for every training example is computed once:
    # a step then costs one small head per task, not a pass through the encoder.
    features = [Features(model, task.data["train"], task.pooled) for task in tasks]
    params = optimizer_groups(model, weight_decay=0.01, verbose=False)  # the heads: nothing else requires grad
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    model.train()
    for step in range(steps):
        set_learning_rate(optimizer, learning_rate_at(step / steps, learning_rate, warmup_fraction, "linear"))
        for i, (task, task_features) in enumerate(zip(tasks, features)):
            rows = batch_at(step, np.arange(len(task.data["train"])), batch_size, seed + i)[0]
            loss = task.loss(model, rows, task_features)
            loss.backward()  # reaches this task's head only: the heads train independently
        torch.nn.utils.clip_grad_norm_([p for group in params for p in group["params"]], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


def joint_static(model, tasks, steps, weights, batch_size=16, learning_rate=5e-5, warmup_fraction=0.1, seed=1337):
    params = optimizer_groups(model, weight_decay=0.01, verbose=False)  # encoder and heads
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    model.train()
    for step in range(steps):
        set_learning_rate(optimizer, learning_rate_at(step / steps, learning_rate, warmup_fraction, "linear"))
        losses = []
        for i, task in enumerate(tasks):  # one batch of every task, through the shared encoder
            rows = batch_at(step, np.arange(len(task.data["train"])), batch_size, seed + i)[0]
            losses.append(task.loss(model, rows))
        total = sum(w * loss for w, loss in zip(weights, losses))  # L = sum_i w_i L_i
        total.backward()  # the encoder's gradient is the weighted sum of the tasks' gradients
        torch.nn.utils.clip_grad_norm_([p for group in params for p in group["params"]], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


def joint_gradnorm(model, tasks, steps, alpha=1.5, weights_lr=0.025, batch_size=16, learning_rate=5e-5,
                   warmup_fraction=0.1, seed=1337):
    params = optimizer_groups(model, weight_decay=0.01, verbose=False)
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    shared = model.encoder.layers[-1].feed_forward.down.weight  # W: the last layer every task goes through
    weights = torch.ones(len(tasks), requires_grad=True)  # w_i, trained by their own optimizer
    weights_optimizer = torch.optim.Adam([weights], lr=weights_lr)
    initial_losses = None
    model.train()
    for step in range(steps):
        set_learning_rate(optimizer, learning_rate_at(step / steps, learning_rate, warmup_fraction, "linear"))
        losses = []
        for i, task in enumerate(tasks):
            rows = batch_at(step, np.arange(len(task.data["train"])), batch_size, seed + i)[0]
            losses.append(task.loss(model, rows))
        total = sum(w * loss for w, loss in zip(weights.detach().tolist(), losses))  # this step's weights
        # GradNorm: G_i = w_i ||dL_i/dW||, pulled towards mean(G) * (r_i ** alpha), where r_i is
        # task i's loss ratio L_i(t)/L_i(0) relative to the mean ratio: a slow task gets more.
        norms = torch.stack([torch.autograd.grad(loss, shared, retain_graph=True)[0].norm() for loss in losses])
        loss_values = torch.stack([loss.detach() for loss in losses])
        initial_losses = loss_values.clone() if initial_losses is None else initial_losses
        ratios = loss_values / initial_losses
        relative_rates = ratios / ratios.mean()
        weighted_norms = weights * norms  # (T,) G_i, a function of the weights only
        target = (weighted_norms.mean() * relative_rates ** alpha).detach()
        weights_optimizer.zero_grad(set_to_none=True)
        weights.grad = torch.autograd.grad((weighted_norms - target).abs().sum(), weights)[0]
        weights_optimizer.step()
        with torch.no_grad():  # every task stays on; the weights sum to the number of tasks
            weights.clamp_(min=1e-3)
            weights.mul_(len(tasks) / weights.sum())
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for group in params for p in group["params"]], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, weights.detach()
