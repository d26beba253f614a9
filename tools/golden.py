#!/usr/bin/python3
"""Golden fixtures for the Java Llama-family forward pass (batcher module).

Writes small random Hugging Face model directories plus expected.json (float64
reference logits) under batcher/src/test/resources/golden/<case>/.
Deterministic: fixed seeds. Run from anywhere:  /usr/bin/python3 tools/golden.py
The reference below is plain torch written from HF Llama semantics (no transformers).
"""
import json, math, os, struct
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                    "batcher", "src", "test", "resources", "golden")

CASES = [
    dict(name="llama_gqa_untied", arch="LlamaForCausalLM", model_type="llama", hidden=72, heads=6,
         kv=2, inter=90, layers=2, vocab=131, tie=False, theta=10000.0, eps=1e-5),
    dict(name="llama_tied_mha_bias", arch="LlamaForCausalLM", model_type="llama", hidden=64, heads=4,
         kv=4, inter=134, layers=2, vocab=97, tie=True, attention_bias=True, theta=500000.0, eps=1e-6),
    dict(name="qwen2_bias", arch="Qwen2ForCausalLM", model_type="qwen2", hidden=48, heads=4, kv=2,
         inter=130, layers=2, vocab=101, tie=True, theta=1000000.0, eps=1e-6),
    dict(name="llama3_rope_scaling", arch="LlamaForCausalLM", model_type="llama", hidden=64, heads=4,
         kv=1, inter=96, layers=2, vocab=89, tie=False, theta=10000.0, eps=1e-5, prompt_len=45,
         max_pos=256, rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                        high_freq_factor=4.0, original_max_position_embeddings=32)),
    dict(name="mistral_bf16_sharded", arch="MistralForCausalLM", model_type="mistral", hidden=64,
         heads=4, kv=2, inter=160, layers=3, vocab=113, tie=False, theta=10000.0, eps=1e-5,
         bf16=True, shards=2),
]


def qkv_bias(c):
    return c["model_type"] == "qwen2" or c.get("attention_bias", False)


def o_bias(c):
    return c["model_type"] == "llama" and c.get("attention_bias", False)


def make_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    # Tied: with a large embedding (or weak layers) the residual is ~ the input token's own embedding,
    # so greedy decoding just repeats a token. Smaller embedding + stronger layers keep it diverse.
    ps = 2.5 if c["tie"] else 1.0
    rn = lambda *s, std=1.0: torch.randn(*s, generator=g, dtype=torch.float32) * std
    H, hd, I = c["hidden"], c["hidden"] // c["heads"], c["inter"]
    W = {"model.embed_tokens.weight": rn(c["vocab"], H, std=0.1 if c["tie"] else 0.5)}
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = 1 + rn(H, std=0.1)
        for n, out in (("q", c["heads"] * hd), ("k", c["kv"] * hd), ("v", c["kv"] * hd), ("o", H)):
            W[p + f"self_attn.{n}_proj.weight"] = rn(out, c["heads"] * hd if n == "o" else H, std=0.08 * ps)
            if (n != "o" and qkv_bias(c)) or (n == "o" and o_bias(c)):
                W[p + f"self_attn.{n}_proj.bias"] = rn(out, std=0.1)
        W[p + "post_attention_layernorm.weight"] = 1 + rn(H, std=0.1)
        W[p + "mlp.gate_proj.weight"] = rn(I, H, std=0.08 * ps)
        W[p + "mlp.up_proj.weight"] = rn(I, H, std=0.08 * ps)
        W[p + "mlp.down_proj.weight"] = rn(H, I, std=0.06 * ps)
    W["model.norm.weight"] = 1 + rn(H, std=0.1)
    if not c["tie"]:
        W["lm_head.weight"] = rn(c["vocab"], H, std=0.08)
    if c.get("bf16"):
        W = {k: v.to(torch.bfloat16) for k, v in W.items()}
    assert all((v != 0).all() for v in W.values())
    return W


# ---------------------------------------------------------------- reference forward
def inv_freq(c, hd, dt):
    inv = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).to(dt) / hd))
    rs = c.get("rope_scaling")
    if rs:  # transformers modeling_rope_utils._compute_llama3_parameters
        f, lo, hi, orig = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], \
            rs["original_max_position_embeddings"]
        low_wl, high_wl = orig / lo, orig / hi
        wl = 2 * math.pi / inv
        inv_l = torch.where(wl > low_wl, inv / f, inv)
        smooth = (orig / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / f + smooth * inv_l
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(W, c, tokens, dt):
    """Causal prefill of `tokens` (positions 0..T-1); returns logits [T, vocab] in float64.
    dt=float64/float32: everything in dt. dt=bfloat16: HF eager bf16 (norm variance, rope cos/sin
    and softmax in float32, cast back to bf16; all else bf16)."""
    acc = torch.float32 if dt == torch.bfloat16 else dt
    W = {k: v.to(dt) for k, v in W.items()}
    nh, nkv, H = c["heads"], c["kv"], c["hidden"]
    hd, T = H // nh, len(tokens)

    def norm(x, w):
        h = x.to(acc)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + c["eps"])
        return w * h.to(dt)

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    freqs = torch.arange(T, dtype=acc)[:, None] * inv_freq(c, hd, acc)[None, :]  # [T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dt), emb.sin().to(dt)
    mask = torch.full((T, T), float("-inf"), dtype=dt).triu(1)
    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, nh, hd).transpose(0, 1)   # [nh, T, hd]
        k = lin(h, p + "self_attn.k_proj").view(T, nkv, hd).transpose(0, 1)  # [nkv, T, hd]
        v = lin(h, p + "self_attn.v_proj").view(T, nkv, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)  # q head j -> kv j//g
        s = (q @ k.transpose(1, 2)) * (1.0 / math.sqrt(hd)) + mask
        a = torch.softmax(s, dim=-1, dtype=acc).to(dt) @ v                     # [nh, T, hd]
        x = x + lin(a.transpose(0, 1).reshape(T, nh * hd), p + "self_attn.o_proj")
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        m = torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj")
        x = x + lin(m, p + "mlp.down_proj")
    x = norm(x, W["model.norm.weight"])
    head = W["lm_head.weight"] if not c["tie"] else W["model.embed_tokens.weight"]
    return (x @ head.T).to(torch.float64)


def greedy(W, c, tokens, n=8):
    out = list(tokens)
    for _ in range(n):
        out.append(int(forward(W, c, out, torch.float64)[-1].argmax()))
    return out[len(tokens):]


# ---------------------------------------------------------------- writers
DT = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:  # no numpy bf16: reinterpret the bits as int16
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    return t.contiguous().numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def config_json(c):
    cfg = {
        "architectures": [c["arch"]], "model_type": c["model_type"],
        "hidden_size": c["hidden"], "intermediate_size": c["inter"],
        "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv"], "head_dim": c["hidden"] // c["heads"],
        "vocab_size": c["vocab"], "rms_norm_eps": c["eps"], "rope_theta": c["theta"],
        "rope_scaling": c.get("rope_scaling"), "max_position_embeddings": c.get("max_pos", 2048),
        "tie_word_embeddings": c["tie"], "torch_dtype": "bfloat16" if c.get("bf16") else "float32",
        "bos_token_id": 1, "eos_token_id": c["vocab"] - 1, "hidden_act": "silu",
    }
    if c["model_type"] == "llama":
        cfg["attention_bias"] = c.get("attention_bias", False)
    if c["model_type"] in ("mistral", "qwen2"):
        cfg["sliding_window"] = None
    if c["model_type"] == "qwen2":
        cfg["use_sliding_window"] = False
    return cfg


def write_case(c, seed):
    d = os.path.join(ROOT, c["name"])
    os.makedirs(d, exist_ok=True)
    W = make_weights(c, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    tokens = torch.randint(0, c["vocab"], (c.get("prompt_len", 11),), generator=g).tolist()
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config_json(c), f, indent=2)
    n = c.get("shards", 1)
    if n == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), W)
    else:
        names, wm = list(W), {}
        for s in range(n):
            fn = f"model-{s + 1:05d}-of-{n:05d}.safetensors"
            part = names[s * len(names) // n:(s + 1) * len(names) // n]
            write_safetensors(os.path.join(d, fn), {k: W[k] for k in part})
            wm.update({k: fn for k in part})
        total = sum(len(tensor_bytes(t)) for t in W.values())
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    logits = forward(W, c, tokens, torch.float64)
    exp = {"tokens": tokens, "logits": logits.tolist(),
           "reference": "float64 torch, HF Llama semantics", "greedy": greedy(W, c, tokens)}
    assert c["vocab"] - 1 not in exp["greedy"]  # greedy never hits EOS, so no stop-on-EOS ambiguity
    if c.get("bf16"):
        exp["bf16_native_max_abs_diff"] = float((forward(W, c, tokens, torch.bfloat16) - logits).abs().max())
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f)
    # sanity: float32 run of the same code (bf16 weights upcast exactly) should agree to ~1e-6
    f32 = (forward({k: v.float() for k, v in W.items()}, c, tokens, torch.float32) - logits).abs().max()
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{c['name']:24s} {size / 1024:7.1f} KiB  max|logit|={logits.abs().max():.3f}  "
          f"f32 diff={f32:.2e}  " + (f"bf16 diff={exp['bf16_native_max_abs_diff']:.3f}" if c.get("bf16") else ""))


if __name__ == "__main__":
    torch.manual_seed(0)
    for i, c in enumerate(CASES):
        write_case(c, seed=1234 + i)
