"""Multi-gate mixture of experts (Ma et al. 2018, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts"), on top of a shared BERT encoder.

    shared bottom    embeddings + the first L - k encoder layers   (every task)
    experts          E copies of the top k encoder layers          (E independent stacks)
    gates            one per task: softmax(W_t · meanpool(x)) over the E experts, per example
    task t reads     sum_e gate_t(x)[e] * expert_e(x)              (B, T, H)

Why the top k *layers* are the experts (and not a new feed-forward stage after the encoder):
every expert then starts from the pretrained weights, so with E=1 the model *is* the shared
model, and the mixture only adds the gates (k·E layers of capacity, E·H parameters per task).
How much each task leans on each expert, averaged over a dataset, is the answer to "how
compatible are the tasks": two tasks that share their experts want the same features.

Symmetry: the experts start as identical copies. They come apart because each task's gate
starts slightly non-uniform (random W_t) and because dropout draws different masks in each
expert, so each expert receives a different gradient from the first step.

Routing (top_k):
    0      dense: every expert runs on every example, weighted by the gate.
    1      Switch-style (Fedus et al. 2021): the example goes to its most likely expert,
           scaled by that expert's gate probability, so the gate still gets a gradient.
    k >= 2 Shazeer et al. 2017: the k most likely experts, their probabilities renormalised.
With routing, an expert runs only on the examples routed to it, so a task's gradient reaches
only the experts its gate picked.
"""

import copy

import torch
import torch.nn as nn

from .heads import mean_pool
from .model import additive_attention_mask


class TaskGate(nn.Module):
    """(B, T, H) hidden states entering the experts -> (B, E) expert probabilities."""

    def __init__(self, hidden_size, num_experts):
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_experts)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_states, attention_mask=None):
        pooled = mean_pool(hidden_states, attention_mask)  # (B, H): one gate per example
        return self.linear(pooled).softmax(dim=-1)  # (B, E)


def route(probabilities, top_k):
    """Gate probabilities (B, E) -> the weights each expert's output gets (B, E); see top."""
    if top_k == 0 or top_k >= probabilities.shape[-1]:
        return probabilities
    top_values, top_indices = probabilities.topk(top_k, dim=-1)  # (B, k)
    if top_k >= 2:
        top_values = top_values / top_values.sum(dim=-1, keepdim=True)
    return torch.zeros_like(probabilities).scatter(-1, top_indices, top_values)


class MultiGateMixture(nn.Module):

    def __init__(self, expert_template, num_experts, task_names, hidden_size, top_k=0):
        """expert_template: nn.ModuleList of the k Blocks each expert starts from (copied)."""
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if not 0 <= top_k <= num_experts:
            raise ValueError(f"top_k must be 0 (dense) or between 1 and num_experts={num_experts}, got {top_k}")
        if not task_names:
            raise ValueError("a mixture needs at least one task (one gate per task)")
        self.num_experts, self.top_k = num_experts, top_k
        self.experts = nn.ModuleList([copy.deepcopy(expert_template) for _ in range(num_experts)])
        self.gates = nn.ModuleDict({name: TaskGate(hidden_size, num_experts) for name in task_names})
        self.last_gates = {}  # task -> (B, E) probabilities of the latest call (balancing loss, gate plots)

    @staticmethod
    def run_expert(layers, x, attention_mask):
        additive_mask = None if attention_mask is None else additive_attention_mask(attention_mask, x.dtype)
        for block in layers:
            x = block(x, additive_mask)
        return x

    def forward(self, hidden_states, attention_mask, task):
        """(B, T, H) from the shared bottom -> (B, T, H) that task `task`'s head reads."""
        if task not in self.gates:
            raise ValueError(f"the mixture has no gate for task {task!r}; its gates are {list(self.gates)}")
        probabilities = self.gates[task](hidden_states, attention_mask)  # (B, E)
        self.last_gates[task] = probabilities
        weights = route(probabilities, self.top_k)  # (B, E), zeros where an example is not routed
        output = None
        for e, expert in enumerate(self.experts):
            rows = (weights[:, e] > 0).nonzero().squeeze(-1) if self.top_k else None
            if rows is not None and rows.numel() == 0:
                continue  # nobody routed here: the expert neither runs nor receives a gradient
            x = hidden_states if rows is None else hidden_states[rows]
            mask = attention_mask if (rows is None or attention_mask is None) else attention_mask[rows]
            y = self.run_expert(expert, x, mask) * (weights[:, e] if rows is None else weights[rows, e])[:, None, None]
            if rows is not None:
                y = torch.zeros_like(hidden_states).index_add(0, rows, y)  # back to (B, T, H)
            output = y if output is None else output + y
        return output

    def load_balancing_loss(self, task):
        """E · sum_e f_e · P_e over the latest batch (Switch Transformer's auxiliary loss):
        P_e the mean gate probability, f_e the fraction of examples whose top expert is e.
        It is 1 when usage is uniform and E when one expert takes everything."""
        probabilities = self.last_gates[task]
        top = probabilities.argmax(dim=-1)
        fraction = torch.bincount(top, minlength=self.num_experts).to(probabilities.dtype) / len(top)
        return self.num_experts * (fraction * probabilities.mean(dim=0)).sum()

    def describe(self):
        return {"num_experts": self.num_experts, "top_k": self.top_k, "tasks": list(self.gates),
                "expert_layers": len(self.experts[0])}


@torch.no_grad()
def gate_usage(model, datasets, batch_size=64):
    """{task: [mean gate probability of each expert]} of a model with a mixture, over one
    dataset per task ({task: data whose batch(indices) gives input_ids, attention_mask, ...}):
    how much each task leans on each expert, the answer to "how compatible are the tasks"."""
    device, usage = next(model.parameters()).device, {}
    model.eval()
    for task, data in datasets.items():
        total = torch.zeros(model.mixture.num_experts)
        for start in range(0, len(data), batch_size):
            input_ids, attention_mask, *_ = data.batch(range(start, min(start + batch_size, len(data))))
            model.get_encoder_output(input_ids.to(device), attention_mask.to(device), task=task)
            total += model.mixture.last_gates[task].sum(dim=0).cpu()
        usage[task] = (total / len(data)).tolist()
    return usage
