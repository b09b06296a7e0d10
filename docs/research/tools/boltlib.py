"""Tiny bbolt reader/writer used to validate the etcd snapshot spec."""
import struct, hashlib
PAGE = 4096
NOFREELIST = 0xFFFFFFFFFFFFFFFF
def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b: h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
_T = []
for i in range(256):
    c = i
    for _ in range(8): c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)
def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data: crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

# ---------------- reader ----------------
def read_db(data):
    """returns dict bucket name -> list of (k, v) (top-level buckets only, as etcd)"""
    ps = struct.unpack_from('<I', data, 16 + 8)[0]
    def meta(off):
        m = struct.unpack_from('<IIIIQQQQQQ', data, off + 16)
        ok = m[0] == 0xED0CDAED and m[1] == 2 and fnv1a64(data[off+16:off+72]) == m[9]
        return ok, m
    cands = [m for ok, m in (meta(0), meta(ps)) if ok]
    m = max(cands, key=lambda m: m[8])
    def items(buf, off):
        pid, flags, count, ovf = struct.unpack_from('<QHHI', buf, off)
        if flags == 1:
            for i in range(count):
                eo = off + 16 + 16 * i
                pos, ks, child = struct.unpack_from('<IIQ', buf, eo)
                yield from items(data, child * ps)
        elif flags == 2:
            for i in range(count):
                eo = off + 16 + 16 * i
                f, pos, ks, vs = struct.unpack_from('<IIII', buf, eo)
                yield f, buf[eo+pos:eo+pos+ks], buf[eo+pos+ks:eo+pos+ks+vs]
        else:
            raise ValueError('bad page type %x' % flags)
    out = {}
    for f, name, v in items(data, m[4] * ps):
        assert f & 1
        root = struct.unpack_from('<Q', v)[0]
        out[name] = list((k, vv) for ff, k, vv in (items(v, 16) if root == 0 else items(data, root * ps)))
    return out

def status(buckets):
    h = 0; total = 0; rev = 0
    for name in sorted(buckets):
        h = crc32c(name, h)
        for k, v in buckets[name]:
            h = crc32c(k, h); h = crc32c(v, h); total += 1
            if name == b'key': rev = struct.unpack('>Q', k[:8])[0]
    return h, rev, total

# ---------------- writer ----------------
class Writer:
    def __init__(self, ps=PAGE, freelist_page=True):
        self.ps = ps; self.pages = {}; self.fl = freelist_page
        self.next = 3 if freelist_page else 2   # 0,1 meta, [2 freelist]
    def alloc(self, buf):
        n = (len(buf) + self.ps - 1) // self.ps
        pid = self.next; self.next += n
        buf = bytearray(buf) + bytes(n * self.ps - len(buf))
        struct.pack_into('<QHHI', buf, 0, pid, struct.unpack_from('<H', buf, 8)[0],
                         struct.unpack_from('<H', buf, 10)[0], n - 1)
        self.pages[pid] = bytes(buf)
        return pid
    @staticmethod
    def leaf_page(elems):   # elems: (flags, k, v)
        hdr = bytearray(16 + 16 * len(elems)); data = bytearray()
        struct.pack_into('<QHHI', hdr, 0, 0, 0x02, len(elems), 0)
        for i, (f, k, v) in enumerate(elems):
            eo = 16 + 16 * i
            pos = len(hdr) + len(data) - eo
            struct.pack_into('<IIII', hdr, eo, f, pos, len(k), len(v)); data += k + v
        return bytes(hdr + data)
    @staticmethod
    def branch_page(elems):  # (k, pgid)
        hdr = bytearray(16 + 16 * len(elems)); data = bytearray()
        struct.pack_into('<QHHI', hdr, 0, 0, 0x01, len(elems), 0)
        for i, (k, pgid) in enumerate(elems):
            eo = 16 + 16 * i
            pos = len(hdr) + len(data) - eo
            struct.pack_into('<IIQ', hdr, eo, pos, len(k), pgid); data += k
        return bytes(hdr + data)
    def tree(self, elems, fill=1.0):
        """write sorted leaf elems as a B+tree; return root pgid"""
        limit = int(self.ps * fill)
        def chunks(items, esz):
            cur, size = [], 16
            for it in items:
                s = esz(it)
                if cur and size + s > limit:
                    yield cur; cur, size = [], 16
                cur.append(it); size += s
            yield cur
        level = []
        for ch in chunks(elems, lambda e: 16 + len(e[1]) + len(e[2])):
            level.append((ch[0][1] if ch else b'', self.alloc(self.leaf_page(ch))))
        while len(level) > 1:
            level = [(ch[0][0], self.alloc(self.branch_page(ch)))
                     for ch in chunks(level, lambda e: 16 + len(e[0]))]
        return level[0][1]
    def bucket_value(self, kvs, inline=True):
        elems = [(0, k, v) for k, v in kvs]
        page = self.leaf_page(elems)
        if inline and len(page) <= self.ps // 4:
            return struct.pack('<QQ', 0, 0) + page
        return struct.pack('<QQ', self.tree(elems), 0)
    def finish(self, buckets, inline=True, txid=1):
        root_elems = [(1, name, self.bucket_value(buckets[name], inline)) for name in sorted(buckets)]
        root = self.tree(root_elems)
        hw = self.next
        out = bytearray(hw * self.ps)
        for pid, buf in self.pages.items(): out[pid*self.ps: pid*self.ps+len(buf)] = buf
        if self.fl: struct.pack_into('<QHHI', out, 2 * self.ps, 2, 0x10, 0, 0)   # empty freelist
        for i in (0, 1):
            m = struct.pack('<IIIIQQQQQ', 0xED0CDAED, 2, self.ps, 0, root, 0,
                            2 if self.fl else NOFREELIST, hw, txid + 1 - i if i == 0 else txid)
            # meta0 txid = txid+1, meta1 = txid  (as tx.WriteTo)
            m = m + struct.pack('<Q', fnv1a64(m))
            struct.pack_into('<QHHI', out, i * self.ps, i, 0x04, 0, 0)
            out[i*self.ps+16: i*self.ps+16+64] = m
        return bytes(out)
def with_trailer(db): return db + hashlib.sha256(db).digest()
