#!/usr/bin/env bash
# Readers outside libzero: a checkpoint saved on 2 ranks and merged by
# zero-ckpt-merge is read with h5py (the rank files through the reader in
# docs/checkpoint-format.md, the merged .h5 at fp32/fp16/bf16) and the
# safetensors file is parsed with numpy as the safetensors library does.
# Skipped (77) where no python3 with h5py and numpy is installed.
# usage: h5py_check.sh ZERO_LAUNCH CKPT_CHECK ZERO_CKPT_MERGE DOC
set -euo pipefail
launch=$1; check=$2; merge=$3; doc=$4
py=
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import h5py, numpy' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then echo "no python3 with h5py and numpy: skipped"; exit 77; fi
dir=$(mktemp -d /tmp/zero-ckpt-h5py-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$launch" --launcher local --num_gpus 2 --master_port 0 "$check" save "$dir" 3 >/dev/null
for t in fp32 bf16 fp16; do "$merge" "$dir" --tag w2s3 -o "$dir/m-$t.h5" --dtype "$t"; done
"$merge" "$dir" --tag w2s3 -o "$dir/m.safetensors"
sed -n '/^```python/,/^```/p' "$doc" | sed '1d;$d' | grep -v '^w = load_param' > "$dir/reader.py"
"$py" - "$dir" <<'PY'
import json, struct, sys
import numpy as np, h5py
d = sys.argv[1]
exec(open(f"{d}/reader.py").read())
names = ["embed.weight", "fc1.weight", "fc1.bias", "ln.gain", "head.w", "scale", "fc2.weight"]
with h5py.File(f"{d}/m-fp32.h5", "r") as f32, h5py.File(f"{d}/m-fp16.h5", "r") as f16, \
     h5py.File(f"{d}/m-bf16.h5", "r") as fb:
    for name in names:
        a = load_param(f"{d}/w2s3", name)
        assert a.dtype == np.float32 and np.array_equal(a, f32[name][()]), name
        h = f16[name][()]
        assert h.dtype == np.float16 and h.shape == a.shape, name
        b = fb[name].astype("f4")[()]          # bf16 -> fp32, converted by HDF5
        assert b.shape == a.shape and np.all(np.abs(b - a) <= np.abs(a) * 2.0**-8), name
buf = open(f"{d}/m.safetensors", "rb").read()
n = struct.unpack("<Q", buf[:8])[0]
hdr = json.loads(buf[8:8 + n])
assert set(hdr) == set(names) | {"__metadata__"}
with h5py.File(f"{d}/m-fp32.h5", "r") as f32:
    for k in names:
        s, e = hdr[k]["data_offsets"]
        assert hdr[k]["dtype"] == "F32"
        arr = np.frombuffer(buf[8 + n + s:8 + n + e], dtype="<f4").reshape(hdr[k]["shape"])
        assert np.array_equal(arr, f32[k][()]), k
print("h5py and safetensors readers: ok")
PY
