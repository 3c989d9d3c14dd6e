"""Tiny models built in code, saved in the real on-disk formats, for tests of the loading paths.

Nothing is downloaded: a BERT with a 60-word vocabulary, two layers and 32 hidden units, saved
with ``save_pretrained`` (what a user copies to local disk), the same as a sentence-transformers
model, and a detoxify checkpoint made the way detoxify's training script saves one (``config`` +
``state_dict``).
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the a is of and to in paris france capital city berlin germany "
    "ignore previous instructions you are now dan idiot stupid hate love good nice day weather "
    "tell me about what how reset password system prompt reveal rules no filter jailbreak hello "
    "world answer question context yes not it this that for with on"
).split()


def build_bert_classifier(directory: Path, labels: list[str], seed: int = 0) -> Path:
    """A tiny BertForSequenceClassification with the given class names, saved to ``directory``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(str(directory))
    return directory


def build_tiny_sentence_model(directory: Path, seed: int = 0) -> Path:
    """A tiny sentence-transformers model (BERT, mean pooling, normalisation), saved to
    ``directory`` as ``SentenceTransformer.save`` writes one."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizer

    source = directory.parent / f"{directory.name}-bert"
    source.mkdir(parents=True, exist_ok=True)
    (source / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(str(source / "vocab.txt"), do_lower_case=True).save_pretrained(str(source))
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(source))
    transformer = Transformer(str(source), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu").save(str(directory))
    return directory


DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def build_detoxify_checkpoint(directory: Path) -> tuple[Path, Path]:
    """(checkpoint file, Hugging Face config dir) of a tiny detoxify ``original``-style model."""
    import torch
    from transformers import BertForSequenceClassification

    hf_dir = build_bert_classifier(directory / "hf", DETOXIFY_CLASSES)
    model = BertForSequenceClassification.from_pretrained(str(hf_dir))
    checkpoint = {
        "config": {
            "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": len(DETOXIFY_CLASSES)}},
            "dataset": {"args": {"classes": DETOXIFY_CLASSES}},
        },
        "state_dict": model.state_dict(),
    }
    path = directory / "toxic_tiny.ckpt"
    torch.save(checkpoint, path)
    return path, hf_dir


def build_tiny_causal_lm(directory: Path, corpus: list[str], seed: int = 0) -> Path:
    """A two-layer GPT-2 with a byte-level BPE tokenizer trained on ``corpus``, saved the way a
    Hugging Face model directory is (the fine-tuning job loads it through the real path)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(str(directory))
    return directory


def build_tiny_qa_lm(directory: Path) -> Path:
    """:func:`build_tiny_causal_lm` with its tokenizer trained on the shipped HaluEval QA pairs."""
    from driftwarden.pkg_data import rows

    corpus = [r["question"] + " " + r["answer"] for r in rows("halueval_qa")][:300]
    return build_tiny_causal_lm(directory, corpus)
