"""Token-id rows of different lengths -> the padded (B, T) tensors a model takes.

    >>> input_ids, attention_mask = padded([[2, 7, 3], [2, 3]], pad_id=0)
    >>> input_ids.tolist(), attention_mask.tolist()
    ([[2, 7, 3], [2, 3, 0]], [[1, 1, 1], [1, 1, 0]])

Every batch in minibert is made here: pretraining pieces (pretraining_data.collate),
fine-tuning examples (tasks.py) and sentences to embed (embedder.py).
"""

import torch


def padded(rows, pad_id):
    """Token-id lists -> (input_ids, attention_mask), both (B, T) with T the longest row.
    The rows are padded as lists and made into a tensor in one call: one small tensor per
    row would cost more than the padding itself."""
    T = max(len(row) for row in rows)
    input_ids = torch.tensor([list(row) + [pad_id] * (T - len(row)) for row in rows], dtype=torch.long)  # (B, T)
    lengths = torch.tensor([len(row) for row in rows])
    attention_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T)
    return input_ids, attention_mask
