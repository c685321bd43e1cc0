#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<parser>/): small valid files of every accepted kind
plus the classic malformed ones. libFuzzer mutates from these; the replay tests run them on every build.
  python3 fuzz/make_corpus.py        (numpy only)"""
import json, os, struct

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(kind, name, data):
    os.makedirs(os.path.join(HERE, kind), exist_ok=True)
    with open(os.path.join(HERE, kind, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True):
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main():
    a = np.arange(6, dtype="<f4")
    st = {
        "valid_f32": safetensors({"w": ("F32", [2, 3], a.tobytes()), "b": ("F32", [3], a[:3].tobytes())}, {"k": "v"}),
        "valid_all_dtypes": safetensors({"f64": ("F64", [2], np.ones(2, "<f8").tobytes()),
                                         "f16": ("F16", [2], np.ones(2, "<f2").tobytes()),
                                         "bf16": ("BF16", [2], b"\x80\x3f\x00\x40"),
                                         "empty": ("F32", [0, 3], b"")}),
        "bad_dtype": safetensors({"a": ("I64", [1], b"\0" * 8)}),
        "nested_metadata": safetensors({}, {"config": json.dumps({"width": 64, "blocks": [1, 2]})}),
    }
    # overlapping ranges: two tensors over the same bytes
    h = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    st["overlap"] = struct.pack("<Q", len(h)) + h + b"\0" * 12
    st["truncated"] = st["valid_f32"][:-5]
    st["huge_header_len"] = struct.pack("<Q", 1 << 62) + b"{}"
    st["unterminated_json"] = struct.pack("<Q", 12) + b'{"a": {"dty'
    for k, v in st.items():
        put("safetensors", k, v)

    def npy(arr, version=1, fortran=False, descr=None):
        hd = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr or arr.dtype.str, fortran, tuple(arr.shape))
        pre = 10 if version == 1 else 12
        hd += " " * (-(pre + len(hd) + 1) % 64) + "\n"
        lenb = struct.pack("<H", len(hd)) if version == 1 else struct.pack("<I", len(hd))
        return b"\x93NUMPY" + bytes([version, 0]) + lenb + hd.encode() + arr.tobytes()

    put("npy", "f32_2x3", npy(np.arange(6, dtype="<f4").reshape(2, 3)))
    put("npy", "f64_nchw", npy(np.ones((2, 1, 2, 2), "<f8")))
    put("npy", "v2_scalar", npy(np.array(3.5, "<f4"), version=2))
    put("npy", "empty_rows", npy(np.zeros((0, 4), "<f4")))
    put("npy", "nan_row", npy(np.array([[1, 2], [np.nan, 3]], "<f4")))
    put("npy", "int64", npy(np.arange(3, dtype="<i8")))
    put("npy", "fortran", npy(np.ones((2, 2), "<f4"), fortran=True))
    put("npy", "big_endian", npy(np.ones(2, ">f4")))
    put("npy", "truncated", npy(np.ones((4, 4), "<f4"))[:-7])
    put("npy", "bad_magic", b"\x93NUMPX\x01\x00" + b"\0" * 10)

    put("csv", "digits_like", "0,1,2,16,3\n4,5,6,7,1\n")
    put("csv", "header", "x,y,label\n0.5,-1e3,1\n2,3,0\n")
    put("csv", "text_cell", "1,2\n3,abc\n")
    put("csv", "ragged", "1,2,3\n4,5\n")
    put("csv", "nan_inf", "1,nan\ninf,2\n")
    put("csv", "quotes_crlf", "\"a\",\"b\"\r\n\"1\",\"2\"\r\n")
    put("csv", "empty", "")
    put("csv", "trailing_comma", "1,2,\n3,4,\n")


if __name__ == "__main__":
    main()
