"""Train the demo's byte-level BPE tokenizer (4096 tokens) on the training split; saved for AutoTokenizer.

    python -m training.train_tokenizer
"""

from __future__ import annotations

from pathlib import Path

from .build_corpus import WORK, load

VOCAB_SIZE = 4096
EOS = "<|endoftext|>"
OUT = WORK / "tokenizer"


def train(out: Path = OUT):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    docs = [d["text"] for d in load("train")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=None,
                                   model_max_length=512, clean_up_tokenization_spaces=False)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


if __name__ == "__main__":
    t = train()
    print(len(t), t.tokenize("In the beginning God created the heaven and the earth."))
    print(t.tokenize("def main(argv):\n    return sorted(argv)"))
