#!/usr/bin/env python3
"""Minimal bbolt reader: dump meta, page map and all buckets (recursively)."""
import struct, sys, hashlib
data = open(sys.argv[1], 'rb').read()
n = len(data)
trailer = None
if n % 512 == 32:
    trailer = data[-32:]; data = data[:-32]
    print("sha256 trailer present:", trailer.hex(), "match:", hashlib.sha256(data).digest() == trailer)
def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b: h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
def meta_at(off):
    pid, flags, count, ovf = struct.unpack_from('<QHHI', data, off)
    m = struct.unpack_from('<IIIIQQQQQQ', data, off + 16)
    keys = 'magic version pageSize flags root sequence freelist pgid txid checksum'.split()
    d = dict(zip(keys, m)); d['page_id'] = pid; d['page_flags'] = flags
    d['checksum_ok'] = fnv1a64(data[off+16:off+16+56]) == d['checksum']
    return d
m0 = meta_at(0); ps = m0['pageSize']; m1 = meta_at(ps)
for i, m in enumerate((m0, m1)):
    print(f"meta{i}:", {k: (hex(v) if k in ('magic','checksum','freelist') else v) for k, v in m.items()})
meta = max((m0, m1), key=lambda m: m['txid'])
print("file size", len(data), "pages", len(data)//ps, "meta.pgid", meta['pgid'])
def page(pid):
    off = pid * ps
    p_id, flags, count, ovf = struct.unpack_from('<QHHI', data, off)
    return off, p_id, flags, count, ovf
# freelist
fl = meta['freelist']
if fl != 0xFFFFFFFFFFFFFFFF:
    off, p_id, flags, count, ovf = page(fl)
    idx = 0
    if count == 0xFFFF:
        count = struct.unpack_from('<Q', data, off+16)[0]; idx = 1
    ids = struct.unpack_from('<%dQ' % count, data, off + 16 + 8*idx)
    print(f"freelist page {fl}: flags={flags:#x} count={count} overflow={ovf} ids={list(ids)}")
pages_seen = {}
def leaf_elems(buf, off, count):
    out = []
    for i in range(count):
        eo = off + 16 + 16*i
        flags, pos, ks, vs = struct.unpack_from('<IIII', buf, eo)
        k = buf[eo+pos: eo+pos+ks]; v = buf[eo+pos+ks: eo+pos+ks+vs]
        out.append((flags, k, v))
    return out
def walk(buf, off, depth, path):
    p_id, flags, count, ovf = struct.unpack_from('<QHHI', buf, off)
    if buf is data:
        pages_seen[p_id] = (flags, count, ovf, path)
    if flags == 0x01:
        for i in range(count):
            eo = off + 16 + 16*i
            pos, ks, child = struct.unpack_from('<IIQ', buf, eo)
            k = buf[eo+pos: eo+pos+ks]
            print("  "*depth + f"[branch p{p_id}] key={k!r} -> page {child}")
            walk(data, child*ps, depth+1, path)
    elif flags == 0x02:
        for f, k, v in leaf_elems(buf, off, count):
            if f & 1:
                root, seq = struct.unpack_from('<QQ', v, 0)
                print("  "*depth + f"BUCKET {k!r} root={root} seq={seq} {'inline('+str(len(v))+'B)' if root==0 else ''}")
                if root == 0:
                    walk(v, 16, depth+1, path + [k])
                else:
                    walk(data, root*ps, depth+1, path + [k])
            else:
                vv = v if len(v) <= 80 else v[:80] + b'...(%d bytes)' % len(v)
                print("  "*depth + f"{k.hex() if not k.isascii() or len(k)==17 else k!r} => {vv!r}")
    else:
        print("  "*depth + f"?? page flags {flags:#x}")
print(f"root bucket: root page {meta['root']}")
walk(data, meta['root']*ps, 0, [])
print("page map:")
for pid in sorted(pages_seen):
    f, c, o, p = pages_seen[pid]
    print(f"  page {pid}: flags={f:#x} count={c} overflow={o} bucket={b'/'.join(p)!r}")
