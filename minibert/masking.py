"""Choosing what the masked language model must predict (Devlin et al. 2019, section 3.1).

BERT's recipe, per sequence: pick round(15%) of the real tokens ([CLS], [SEP] and [PAD]
never), then replace 80% of the picks with [MASK], 10% with a random token, and leave 10%
unchanged. The labels hold the original id at picked positions and -100 elsewhere, which
the loss ignores. The random and unchanged 10%s matter because [MASK] never occurs at
fine-tuning time: the model must build a good representation of every token, not only of
[MASK].

Three ways to pick:
  "exact"      -- exactly round(rate * n) tokens per sequence (at least 1), as BERT's code;
  "whole_word" -- the same budget, but a word's "##" pieces are picked together
                  (BERT's whole-word-masking release: predicting "##ing" from "play" is too easy);
  "bernoulli"  -- each token independently with probability `rate` (as many libraries do).

    >>> masker = Masker(vocab_size=10, special_ids=[0, 1, 2, 3], mask_id=3, rate=0.5, strategy="exact")
    >>> ids = torch.tensor([[1, 5, 6, 7, 8, 2]])        # [CLS] a b c d [SEP]
    >>> masked, labels = masker(ids, torch.Generator().manual_seed(0))
    >>> int((labels != -100).sum())                     # round(0.5 * 4) = 2 picks
    2
"""

import torch


class Masker:

    STRATEGIES = ("exact", "whole_word", "bernoulli")

    def __init__(self, vocab_size, special_ids, mask_id, rate, strategy,
                 continuation_ids=None, max_predictions=None, mask_fraction=0.8, random_fraction=0.1):
        """rate, strategy: no default here; train_mlm.py's DEFAULTS (mask_rate, masking) is
        the one place they are set (BERT: 15%, exact counts).
        special_ids: never picked, never drawn as random replacements.
        continuation_ids: ids of "##" pieces, needed by whole-word masking (an empty list is a
            vocabulary without any, as one trained on Chinese: every token is then a word).
        max_predictions: cap on picks per sequence (BERT used 20 for 128 tokens)."""
        if strategy not in self.STRATEGIES:
            raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {self.STRATEGIES}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"mask rate must be in (0, 1], got {rate}")
        if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
            raise ValueError("mask_fraction and random_fraction must be >= 0 and sum to at most 1")
        if strategy == "whole_word" and continuation_ids is None:
            raise ValueError("whole-word masking needs continuation_ids (the ids of '##' pieces)")
        self.vocab_size, self.mask_id, self.rate, self.strategy = vocab_size, mask_id, rate, strategy
        self.max_predictions = max_predictions
        self.mask_fraction, self.random_fraction = mask_fraction, random_fraction
        self.is_special = torch.zeros(vocab_size, dtype=torch.bool)
        self.is_special[list(special_ids)] = True
        self.is_continuation = torch.zeros(vocab_size, dtype=torch.bool)
        self.is_continuation[list(continuation_ids or ())] = True
        self.replacement_ids = torch.nonzero(~self.is_special).squeeze(1)  # random draws come from here

    def budget(self, num_candidates):
        """How many tokens a sequence with this many maskable tokens gets: round(rate * n),
        at least 1 when there is anything to mask, at most max_predictions."""
        count = torch.round(num_candidates.float() * self.rate).long().clamp(min=1)
        if self.max_predictions is not None:
            count = count.clamp(max=self.max_predictions)
        return torch.minimum(count, num_candidates)

    def max_per_sequence(self, seq_len):
        """The most positions a sequence of seq_len tokens can have picked: the prediction
        slots the MLM head needs for a batch of that length (its forward's max_predictions).
        None for "bernoulli", which has no bound.

            >>> Masker(vocab_size=10, special_ids=[0], mask_id=3, rate=0.15, strategy="exact").max_per_sequence(128)
            19
        """
        if self.strategy == "bernoulli":
            return None
        return int(self.budget(torch.tensor([seq_len]))[0])  # the budget grows with the number of candidates

    def pick(self, input_ids, generator):
        """(B, T) ids -> (B, T) bool, True where the model must predict."""
        candidates = ~self.is_special[input_ids]  # (B, T)
        if self.strategy == "bernoulli":
            return candidates & (torch.rand(input_ids.shape, generator=generator) < self.rate)
        budget = self.budget(candidates.sum(dim=1))  # (B,)
        if self.strategy == "exact":
            # A random score per candidate; the `budget` lowest scores of each row are picked.
            scores = torch.rand(input_ids.shape, generator=generator).masked_fill(~candidates, 2.0)
            ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T): rank of each position in its row
            return ranks < budget[:, None]
        return self.pick_whole_words(input_ids, candidates, budget, generator)

    def pick_whole_words(self, input_ids, candidates, budget, generator):
        """Words in random order, each taken whole while it still fits in the budget."""
        # A word starts at every piece without "##", and also at a "##" piece that follows
        # a special token: a sequence cut from the middle of a document can begin with
        # "##x", whose head is in the piece before; it is a word of its own, not part of
        # the next one.
        after_candidate = torch.zeros_like(candidates)
        after_candidate[:, 1:] = candidates[:, :-1]
        word_starts = candidates & (~self.is_continuation[input_ids] | ~after_candidate)
        word_index = torch.cumsum(word_starts.long(), dim=1) - 1  # (B, T): which word a piece belongs to
        picked = torch.zeros_like(candidates)
        for row in range(input_ids.shape[0]):
            words = word_index[row][candidates[row]]  # >= 0: every candidate has a word start at or before it
            if words.numel() == 0:
                continue
            sizes = torch.bincount(words)
            taken, chosen = 0, []
            for word in torch.randperm(len(sizes), generator=generator).tolist():
                size = int(sizes[word])
                if size and taken + size <= budget[row]:
                    chosen.append(word)
                    taken += size
                if taken == budget[row]:
                    break
            in_chosen = torch.isin(word_index[row], torch.tensor(chosen, dtype=torch.long))
            picked[row] = candidates[row] & in_chosen
        return picked

    def __call__(self, input_ids, generator=None):
        """-> (masked input_ids, labels). The input is not modified."""
        picked = self.pick(input_ids, generator)
        labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
        # One uniform draw per position decides its fate: [MASK], random token, or unchanged.
        fate = torch.rand(input_ids.shape, generator=generator)
        use_mask = picked & (fate < self.mask_fraction)
        use_random = picked & (fate >= self.mask_fraction) & (fate < self.mask_fraction + self.random_fraction)
        random_tokens = self.replacement_ids[
            torch.randint(len(self.replacement_ids), input_ids.shape, generator=generator)]
        masked = torch.where(use_mask, torch.full_like(input_ids, self.mask_id), input_ids)
        masked = torch.where(use_random, random_tokens, masked)
        return masked, labels

    @classmethod
    def for_tokenizer(cls, tokenizer, **kwargs):
        """A Masker that knows the tokenizer's special and '##' ids."""
        continuation_ids = [i for token, i in tokenizer.vocab.items() if token.startswith("##")]
        return cls(tokenizer.vocab_size, tokenizer.all_special_ids, tokenizer.mask_token_id,
                   continuation_ids=continuation_ids, **kwargs)
