import struct, sys, json, boltlib
def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def fld_bytes(no, b): return bytes([no << 3 | 2]) + varint(len(b)) + b if b else b''
def fld_int(no, v): return bytes([no << 3]) + varint(v) if v else b''
def kv(key, create, mod, ver, value, lease=0):
    return fld_bytes(1, key) + fld_int(2, create) + fld_int(3, mod) + fld_int(4, ver) + fld_bytes(5, value) + fld_int(6, lease)
def revkey(main, sub=0, tomb=False):
    return struct.pack('>Q', main) + b'_' + struct.pack('>Q', sub) + (b't' if tomb else b'')
inline = sys.argv[2] != 'noinline' if len(sys.argv) > 2 else True
keys = []
rev = 1
# rev 2..3001: put k%05d
N = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
for i in range(N):
    rev += 1
    keys.append((revkey(rev), kv(b'k%05d' % i, rev, rev, 1, b'value-%d' % i)))
rev += 1; keys.append((revkey(rev), kv(b'big', rev, rev, 1, b'B' * 20000)))          # overflow pages
rev += 1; keys.append((revkey(rev, 0), kv(b'tx1', rev, rev, 1, b'a')))
keys.append((revkey(rev, 1), kv(b'tx2', rev, rev, 1, b'b')))                           # sub revision
rev += 1; keys.append((revkey(rev), kv(b'k00000', 2, rev, 2, b'updated')))
rev += 1; keys.append((revkey(rev, 0, True), kv(b'k00001', 0, 0, 0, b'')))            # tombstone
LEASE = 0x1234
rev += 1; keys.append((revkey(rev), kv(b'leased', rev, rev, 1, b'v', LEASE)))
lease_val = fld_int(1, LEASE) + fld_int(2, 600)
member = {"id": 0x1111, "peerURLs": ["http://127.0.0.1:32380"], "name": "old"}
buckets = {
    b'alarm': [], b'auth': [(b'authRevision', struct.pack('>Q', 1))], b'authRoles': [], b'authUsers': [],
    b'cluster': [(b'clusterVersion', b'3.4.0')],
    b'key': keys,
    b'lease': [(struct.pack('>Q', LEASE), lease_val)],
    b'members': [(b'%x' % 0x1111, json.dumps(member, separators=(',', ':')).encode())],
    b'members_removed': [],
    b'meta': [(b'consistent_index', struct.pack('>Q', 777))],
}
w = boltlib.Writer()
db = w.finish(buckets, inline=inline)
open(sys.argv[1], 'wb').write(boltlib.with_trailer(db))
print('wrote', sys.argv[1], len(db), 'bytes; expected status', boltlib.status(buckets), 'last rev', rev)
