#!/usr/bin/env python3
"""Independent reference of parbench's deterministic generator.

Re-implements, from the specification alone (docs/data.md; workloads/rng.h,
workloads/data.c, workloads/mlp.c), the parameter init and the synthetic data
of the mlp-xs workload, and prints the golden values that
tests/unit/test_data.c pins. Pure Python, no numpy: float32 rounding is done
with struct. If this script and the C library disagree, the generator is not
reproducible from its description.

    python3 tests/data_reference.py            # golden values, one per line
    python3 tests/data_reference.py --full     # also FNV-1a checksums of the
                                               # whole params_init and batch 0

Each line is `name 0xBITS hexfloat` (BITS: the float32 bit pattern) or
`name integer`, the same names test_data.c uses.

    python3 tests/data_reference.py --gpt      # the gpt-xs workload's instead:
                                               # its token table, batch 0's
                                               # tokens and its initial
                                               # parameters (test_gpt.c runs
                                               # this and compares)
"""
import math
import struct
import sys

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
STREAM_WEIGHT, STREAM_BIAS, STREAM_PROTOTYPE, STREAM_SAMPLE = 1, 2, 3, 4


def f32(x):
    """Round a Python float (double) to the nearest float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def mix64(z):
    """SplitMix64's finaliser on 64-bit unsigned integers."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def rng_key(seed, stream, a, b):
    k = mix64(seed + stream * GOLDEN)
    k = mix64(k ^ (a & MASK))
    return mix64(k ^ (b & MASK))


def rng_u64(key, j):
    return mix64(key + (j + 1) * GOLDEN)


def rng_unit(v):
    # top 24 bits times 2^-24: exact in float32
    return (v >> 40) * 2.0 ** -24


def rng_symmetric(v, bound):
    # bound * (2u - 1): 2u - 1 is exact in float32 (a multiple of 2^-23 in
    # [-1, 1)); the product of two float32 values is exact in a double, so one
    # rounding to float32 gives what the C float multiply gives.
    return f32(bound * (2.0 * rng_unit(v) - 1.0))


# mlp-xs: in 256, hidden 256, layers 3, classes 10, batch 64
IN, HIDDEN, LAYERS, CLASSES, BATCH = 256, 256, 3, 10, 64
SEED = 1234


def layout():
    """(in, out, w_off, b_off) per layer: W [out, in] then b [out], in order."""
    layers, off = [], 0
    for l in range(LAYERS):
        fin = IN if l == 0 else HIDDEN
        fout = CLASSES if l == LAYERS - 1 else HIDDEN
        w_off = off
        off += fin * fout
        b_off = off
        off += fout
        layers.append((fin, fout, w_off, b_off))
    return layers, off


def bound_of(fan_in):
    # 1.0f / sqrtf((float)fan_in): a double sqrt/divide rounded once to
    # float32 is the correctly rounded float32 result
    return f32(1.0 / f32(math.sqrt(fan_in)))


def init_params(seed):
    layers, n = layout()
    p = [0.0] * n
    for l, (fin, fout, w_off, b_off) in enumerate(layers):
        bound = bound_of(fin)
        for o in range(fout):
            key = rng_key(seed, STREAM_WEIGHT, l, o)
            base = w_off + o * fin
            for k in range(fin):
                p[base + k] = rng_symmetric(rng_u64(key, k), bound)
        bkey = rng_key(seed, STREAM_BIAS, l, 0)
        for o in range(fout):
            p[b_off + o] = rng_symmetric(rng_u64(bkey, o), bound)
    return p


def param_at(seed, index):
    """One parameter without generating the rest."""
    layers, _ = layout()
    for l, (fin, fout, w_off, b_off) in enumerate(layers):
        if w_off <= index < b_off:
            o, k = divmod(index - w_off, fin)
            return rng_symmetric(rng_u64(rng_key(seed, STREAM_WEIGHT, l, o), k), bound_of(fin))
        if b_off <= index < b_off + fout:
            o = index - b_off
            return rng_symmetric(rng_u64(rng_key(seed, STREAM_BIAS, l, 0), o), bound_of(fin))
    raise IndexError(index)


def prototype_row(seed, c):
    key = rng_key(seed, STREAM_PROTOTYPE, c, 0)
    return [rng_symmetric(rng_u64(key, j + 1), 1.0) for j in range(IN)]


def sample(seed, step, i):
    """(features, label) of sample i of step `step`."""
    key = rng_key(seed, STREAM_SAMPLE, step, i)
    label = rng_u64(key, 0) % CLASSES
    proto = prototype_row(seed, label)
    # 0.5f * proto + 0.5f * noise: both halves exact, one rounding of the sum
    x = [f32(0.5 * proto[j] + 0.5 * rng_symmetric(rng_u64(key, j + 1), 1.0)) for j in range(IN)]
    return x, label


def fnv1a_f32(values):
    """FNV-1a 64 over the little-endian float32 bytes of the array."""
    h = 0xCBF29CE484222325
    for v in values:
        for byte in struct.pack("<f", v):
            h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def fnv1a_i32(values):
    h = 0xCBF29CE484222325
    for v in values:
        for byte in struct.pack("<i", v):
            h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def show(name, value):
    print(f"{name} 0x{bits(value):08x} {value.hex()}")


def main():
    layers, n = layout()
    print(f"n_params {n}")
    x0, label0 = sample(SEED, 0, 0)
    for j in range(4):
        show(f"x0_{j}", x0[j])
    print(f"label_0 {label0}")
    print(f"label_1 {sample(SEED, 0, 1)[1]}")
    x63, label63 = sample(SEED, 0, 63)
    print(f"label_63 {label63}")
    show("x63_255", x63[IN - 1])
    show("proto0_0", prototype_row(SEED, 0)[0])
    for name, index in [("w0_0", 0), ("w0_1", 1), ("b0_0", layers[0][3]), ("w1_0", layers[1][2]),
                        ("w2_0", layers[2][2]), ("b2_9", layers[2][3] + 9)]:
        show(name, param_at(SEED, index))
    if "--full" in sys.argv[1:]:
        print(f"fnv_params_init 0x{fnv1a_f32(init_params(SEED)):016x}")
        xs, labels = [], []
        for i in range(BATCH):
            x, label = sample(SEED, 0, i)
            xs.extend(x)
            labels.append(label)
        print(f"fnv_batch0_x 0x{fnv1a_f32(xs):016x}")
        print(f"fnv_batch0_labels 0x{fnv1a_i32(labels):016x}")


# gpt-xs: d 64, layers 2, heads 4, seq 32, vocab 256 (padded 256), batch 8
G_C, G_L, G_T, G_V, G_B = 64, 2, 32, 256, 8
G_VP = (G_V + 127) // 128 * 128
G_FANOUT = 4
STREAM_GPT_INIT, STREAM_TOKEN_TABLE, STREAM_SEQUENCE = 5, 6, 7
G_LAYER = [("ln_1.weight", 0, 1), ("ln_1.bias", 0, 1), ("attn.c_attn.weight", 3, 1), ("attn.c_attn.bias", 0, 3),
           ("attn.c_proj.weight", 1, 1), ("attn.c_proj.bias", 0, 1), ("ln_2.weight", 0, 1), ("ln_2.bias", 0, 1),
           ("mlp.c_fc.weight", 4, 1), ("mlp.c_fc.bias", 0, 4), ("mlp.c_proj.weight", 1, 4),
           ("mlp.c_proj.bias", 0, 1)]


def gpt_tensors():
    """[(name, size)] in the flat buffer's order (docs/workloads.md)."""
    t = [("wte.weight", G_VP * G_C), ("wpe.weight", G_T * G_C)]
    for l in range(G_L):
        for name, rows, cols in G_LAYER:
            t.append((f"h.{l}.{name}", rows * G_C * cols * G_C if rows else cols * G_C))
    return t + [("ln_f.weight", G_C), ("ln_f.bias", G_C), ("lm_head.weight", G_VP * G_C)]


def gpt_normal(key, j):
    """Box-Muller from values 2j and 2j+1 of the row, in double."""
    u1 = ((rng_u64(key, 2 * j) >> 40) + 1.0) * 2.0 ** -24
    u2 = (rng_u64(key, 2 * j + 1) >> 40) * 2.0 ** -24
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def gpt_init(seed):
    params = []
    proj_std = 0.02 / math.sqrt(2.0 * G_L)
    wte = None
    for t, (name, size) in enumerate(gpt_tensors()):
        if name == "lm_head.weight":
            params.extend(wte)
            continue
        n = G_V * G_C if name == "wte.weight" else size
        if "ln_" in name and name.endswith(".weight"):
            vals = [1.0] * n
        elif name.endswith(".weight"):
            sd = proj_std if "c_proj" in name else 0.02
            key = rng_key(seed, STREAM_GPT_INIT, t, 0)
            vals = [f32(sd * f32(gpt_normal(key, j))) for j in range(n)]
        else:
            vals = [0.0] * n
        vals += [0.0] * (size - n)
        if name == "wte.weight":
            wte = vals
        params.extend(vals)
    return params


def gpt_table(seed):
    return [[rng_u64(rng_key(seed, STREAM_TOKEN_TABLE, v, 0), k) % G_V for k in range(G_FANOUT)] for v in range(G_V)]


def gpt_sequence(seed, table, step, i):
    """(inputs, targets) of sequence i of step `step`: T + 1 tokens walked
    through the table, the first T and the last T."""
    key = rng_key(seed, STREAM_SEQUENCE, step, i)
    tokens = [rng_u64(key, 0) % G_V]
    for t in range(G_T):
        tokens.append(table[tokens[-1]][rng_u64(key, t + 1) % G_FANOUT])
    return tokens[:-1], tokens[1:]


def main_gpt():
    table = gpt_table(SEED)
    print(f"table_0 {' '.join(str(v) for v in table[0])}")
    inputs, targets = [], []
    for i in range(G_B):
        x, y = gpt_sequence(SEED, table, 0, i)
        inputs.extend(x)
        targets.extend(y)
    print(f"seq0 {' '.join(str(v) for v in inputs[:8])}")
    print(f"fnv_batch0_inputs 0x{fnv1a_i32(inputs):016x}")
    print(f"fnv_batch0_targets 0x{fnv1a_i32(targets):016x}")
    p = gpt_init(SEED)
    print(f"n_params {len(p)}")
    print(f"fnv_params_init 0x{fnv1a_f32(p):016x}")


if __name__ == "__main__":
    if "--gpt" in sys.argv[1:]:
        main_gpt()
    else:
        main()
