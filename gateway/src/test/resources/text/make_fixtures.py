#!/usr/bin/env python3
"""Writes the two small tokenizer fixtures used by the text package's tests.

  bytelevel/  Llama-3 style: Split(regex) + ByteLevel pre-tokenizer, ByteLevel decoder,
              TemplateProcessing that prepends <|begin_of_text|>.
  spm/        Llama-2 / Mistral style: Prepend("▁") + Replace(" ", "▁") normalizer, BPE with
              byte_fallback and all 256 <0xNN> tokens, decoder
              Replace("▁", " "), ByteFallback, Fuse, Strip(1 left); TemplateProcessing adds <s>.

The merges come from a tiny BPE trainer run on CORPUS below, so they are consistent. The script
also prints reference encodings (by its own BPE encoder) of a few sentences; the Java tests pin
those and check that DJL agrees. Needs only the `regex` module. Run from this folder:
    python3 make_fixtures.py
"""
import collections
import json
import os

import regex

CORPUS = """
Hello world. The cat sat on the mat, and the dog sat on the log. Hello again, world!
The tokenizer splits the text into tokens; the model reads the tokens and writes new ones.
A token is often a whole word such as the, and, world or hello, but a rare word breaks into
smaller pieces. Streaming means that the server sends the text as soon as it is ready, one
token at a time, and the client joins the pieces back together. Testing the tokenizer on
hello, help, held and hold shows which merges fire. The quick brown fox jumps over the lazy dog.
"""

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def train(words, num_merges):
    """words: list of symbol tuples. Returns merges (pairs) in rank order."""
    counts = collections.Counter(tuple(w) for w in words)
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for w, c in counts.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + kv[0][1]]))
        (a, b), c = best
        if c < 2:
            break
        merges.append((a, b))
        new_counts = collections.Counter()
        for w, cnt in counts.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_counts[tuple(out)] += cnt
        counts = new_counts
    return merges


def bpe(symbols, ranks):
    symbols = list(symbols)
    while len(symbols) > 1:
        best = min(((ranks.get((a, b), 1 << 30), i) for i, (a, b) in
                    enumerate(zip(symbols, symbols[1:]))))
        if best[0] == 1 << 30:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def added(id_, content, special=True):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": special}


def write(folder, tokenizer, config):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


def byte_level():
    b2u = bytes_to_unicode()
    enc = lambda s: "".join(b2u[b] for b in s.encode("utf-8"))
    words = [enc(w) for w in regex.findall(LLAMA3_PATTERN, CORPUS)]
    merges = train(words, 200)
    vocab = {b2u[b]: b for b in range(256)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"]
    base = len(vocab)
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(base + i, s) for i, s in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [base],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
              "chat_template": open("templates/llama3.jinja", encoding="utf-8").read(),
              "clean_up_tokenization_spaces": True, "model_max_length": 8192,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    write("bytelevel", tok, config)
    ranks = {m: i for i, m in enumerate(merges)}
    for text in ["Hello world", "the cat sat on the mat", "tokenizer", "hello, help"]:
        pieces = []
        for w in regex.findall(LLAMA3_PATTERN, text):  # ignore_merges: whole words first
            pieces += [enc(w)] if enc(w) in vocab else bpe(enc(w), ranks)
        print("bytelevel", repr(text), pieces, [vocab[p] for p in pieces])
    print("bytelevel size", len(vocab) + len(specials), "specials from", base)


def sentencepiece():
    normalized = lambda s: "▁" + s.replace(" ", "▁")
    words = ["▁" + w for w in regex.findall(r"[^\s]+", CORPUS)]
    chars = sorted({c for w in words for c in w if c.isascii() or c == "▁"})
    merges = train(words, 150)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    config = {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                            "normalized": False, "rstrip": False, "single_word": False},
              "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False,
                            "normalized": False, "rstrip": False, "single_word": False},
              "chat_template": [
                  {"name": "default",
                   "template": open("templates/llama2.jinja", encoding="utf-8").read()},
                  {"name": "tool_use", "template": "{{ 'tools' }}"}],
              "add_bos_token": True, "add_eos_token": False, "legacy": True,
              "clean_up_tokenization_spaces": False, "model_max_length": 4096,
              "tokenizer_class": "LlamaTokenizer"}
    write("spm", tok, config)
    ranks = {m: i for i, m in enumerate(merges)}
    for text in ["Hello world", "the cat sat on the mat", "tokenizer", "hello, help"]:
        pieces = bpe(normalized(text), ranks)
        print("spm", repr(text), pieces, [vocab[p] for p in pieces])
    print("spm size", len(vocab))


if __name__ == "__main__":
    byte_level()
    sentencepiece()
