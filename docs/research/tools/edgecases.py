import boltlib, struct, subprocess, hashlib, os, shutil
def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API='3'))
    lines = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode, (lines[-1] if lines else '')[:220]
def revkey(m, s=0): return struct.pack('>Q', m) + b'_' + struct.pack('>Q', s)
kv = b'\x0a\x01a\x10\x02\x18\x02\x20\x01\x2a\x01x'
def restore(path, extra=''):
    shutil.rmtree('/tmp/research/rx', ignore_errors=True)
    return run(f'etcdctl snapshot restore {path} {extra} --name r1 --data-dir /tmp/research/rx --initial-cluster r1=http://127.0.0.1:32380 --initial-advertise-peer-urls http://127.0.0.1:32380')
def case(name, data):
    p = f'/tmp/research/case-{name}.snap'; open(p, 'wb').write(data)
    print(name, 'len%512=', len(data) % 512, '| status:', run(f'etcdctl snapshot status {p} -w json'), '| restore:', restore(p))
    return p
# A: no freelist page (pgidNoFreelist), only key+meta buckets
w = boltlib.Writer(freelist_page=False)
db = w.finish({b'key': [(revkey(2), kv)], b'meta': []})
#case('nofreelist-minimal', boltlib.with_trailer(db))
# B: no trailer
w = boltlib.Writer(); db = w.finish({b'key': [(revkey(2), kv)], b'meta': []})
p = 0 #', db)
#print('  notrailer with --skip-hash-check:', restore(p, '--skip-hash-check'))
# C: wrong sha
#case('badsha', db + bytes(32))
# D: unreachable page (extra page after data, not in freelist)
#case('unreachable', boltlib.with_trailer(db + bytes(4096)).replace(b'', b'', 0))
# E: meta0 corrupt checksum (meta1 valid)
bad = bytearray(db); bad[16+56] ^= 0xFF
#case('meta0-corrupt', boltlib.with_trailer(bytes(bad)))
# F: empty key bucket
w = boltlib.Writer(); db = w.finish({b'key': [], b'meta': []})
#case('emptykey', boltlib.with_trailer(db))
# G: unsorted keys in a leaf
w = boltlib.Writer(); db = w.finish({b'key': [(revkey(3), kv), (revkey(2), kv)], b'meta': []})
#case('unsorted', boltlib.with_trailer(db))
# H: page size 16384 
w = boltlib.Writer(ps=16384); db = w.finish({b'key': [(revkey(2), kv)], b'meta': []})
#case('ps16k', boltlib.with_trailer(db))
# I: hole inside high-water mark, not in freelist
w = boltlib.Writer(); w.next += 1   # skip page 3
db = w.finish({b'key': [(revkey(2), kv)], b'meta': []})
case('hole-unfreed', boltlib.with_trailer(db))
# J: same hole, listed in the freelist page
d = bytearray(db); struct.pack_into('<QHHI', d, 2*4096, 2, 0x10, 1, 0); struct.pack_into('<Q', d, 2*4096+16, 3)
case('hole-freed', boltlib.with_trailer(bytes(d)))
# K: hole with no freelist (pgidNoFreelist) -> reconstructed
w = boltlib.Writer(freelist_page=False); w.next += 1
db = w.finish({b'key': [(revkey(2), kv)], b'meta': []})
case('hole-nofreelist', boltlib.with_trailer(db))
