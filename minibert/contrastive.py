"""Training sentence embeddings contrastively: pull matching sentences together, push the
rest apart. Three objectives over the same (mean-pooled) embedder:

info_nce          -- Unsupervised SimCSE (Gao, Yao & Chen 2021). Encode each sentence twice
                     with dropout on: the two views are a positive pair, every other sentence
                     in the batch is a negative. Cross-entropy over cosine similarities / tau.
cosine_similarity -- Supervised regression on scored pairs (STS-B): make cos(u, v) equal
                     the gold score rescaled to [0, 1] (mean squared error).
cosent            -- Supervised ranking on scored pairs (Su 2022, "CoSENT"): only the order
                     matters. For every two pairs where gold says (i) > (j), penalise
                     cos_j > cos_i: log(1 + sum exp(scale * (cos_j - cos_i))).

All three take unnormalised embeddings (B, H); they normalise internally.
"""

import torch
import torch.nn.functional as F

from .heads import at_least_float32


def info_nce(view_a, view_b, temperature):
    """view_a, view_b: (B, H), row i of each is the same sentence. Returns the mean over
    rows of -log softmax(cos(a_i, b_*) / tau)[i]. The temperature tau has no default here:
    train_embedder.py's DEFAULTS sets it (SimCSE used 0.05).

    Hand example (tau = 1): a = b = the 2-D unit vectors e1, e2. Cosines are [[1, 0], [0, 1]],
    so each row's loss is -log(e / (e + 1)) = log(1 + 1/e) = 0.3133.
    """
    if view_a.shape != view_b.shape or view_a.dim() != 2:
        raise ValueError(f"views must both be (B, H), got {tuple(view_a.shape)} and {tuple(view_b.shape)}")
    a, b = F.normalize(at_least_float32(view_a), dim=-1), F.normalize(at_least_float32(view_b), dim=-1)
    logits = a @ b.T / temperature  # (B, B): row i against every candidate j
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def cosine_similarity_loss(u, v, scores, max_score=5.0):
    """Mean squared error between cos(u_i, v_i) and score_i / max_score."""
    cosine = F.cosine_similarity(at_least_float32(u), at_least_float32(v), dim=-1)
    return F.mse_loss(cosine, scores.to(cosine.dtype) / max_score)


def cosent_loss(u, v, scores, scale):
    """log(1 + sum over (i, j) with score_i > score_j of exp(scale * (cos_j - cos_i))).
    The scale has no default here: train_embedder.py's DEFAULTS sets it (CoSENT used 20)."""
    cosine = F.cosine_similarity(at_least_float32(u), at_least_float32(v), dim=-1) * scale  # (B,)
    differences = cosine[None, :] - cosine[:, None]  # (B, B): [i, j] = cos_j - cos_i
    ordered = scores[:, None] > scores[None, :]  # (B, B): gold ranks pair i above pair j
    differences = differences.masked_fill(~ordered, float("-inf"))
    # The leading 0 is the "1 +": logsumexp([0, d...]) = log(1 + sum exp(d)).
    flat = torch.cat([torch.zeros(1, dtype=differences.dtype, device=differences.device), differences.flatten()])
    return torch.logsumexp(flat, dim=0)
