use std::io::Write;

use super::read::Reader;
use super::write::{Emitter, Layout, Planner};
use super::*;

/// `etcdctl snapshot save` of a real etcd 3.4.23 (see the format notes, §1), and the
/// minimal file of §7.5; both end in their SHA-256.
const ETCD_SNAP: &[u8] = include_bytes!("../../../testdata/etcd-3.4.23.snap");
const GOLDEN_MIN: &[u8] = include_bytes!("../../../testdata/golden-min.snap");

type Rows = Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>;

fn file_of(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn read_all(bytes: &[u8]) -> Result<Rows, BoltError> {
    let data = bytes.len() as u64 - if bytes.len() % 512 == 32 { 32 } else { 0 };
    let r = Reader::open(file_of(bytes), data)?;
    let mut rows = Vec::new();
    r.for_each(|b, k, v| {
        rows.push((b.to_vec(), k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    Ok(rows)
}

fn rev(main: u64, sub: u64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

#[test]
fn reads_a_real_etcd_snapshot() {
    let rows = read_all(ETCD_SNAP).unwrap();
    let r = Reader::open(file_of(ETCD_SNAP), 49152).unwrap();
    let m = r.meta();
    assert_eq!(
        (m.root, m.pages, m.txid, m.freelist),
        (11, 12, 16, NO_FREELIST)
    );
    // etcdctl snapshot status: 18 keys, revision 11.
    assert_eq!(rows.len(), 18);
    let in_key: Vec<_> = rows.iter().filter(|(b, _, _)| b == b"key").collect();
    assert_eq!(in_key.len(), 9);
    assert_eq!(in_key[0].1, rev(4, 0));
    assert_eq!(
        in_key[0].2,
        b"\x0a\x03foo\x10\x02\x18\x04\x20\x03\x2a\x04bar3".to_vec()
    );
    let mut tomb = rev(8, 0);
    tomb.push(b't');
    assert!(in_key
        .iter()
        .any(|(_, k, v)| *k == tomb && v == b"\x0a\x08todelete"));
    assert_eq!(in_key.last().unwrap().1, rev(11, 1));
    let big = in_key.iter().find(|(_, k, _)| *k == rev(9, 0)).unwrap();
    assert!(big.2.len() > 5000, "the value that overflows its page");
    let meta: Vec<_> = rows.iter().filter(|(b, _, _)| b == b"meta").collect();
    assert_eq!(meta[0].1, b"consistent_index");
    assert_eq!(meta[0].2, 20u64.to_be_bytes());
    assert_eq!(meta[1].1, b"finishedCompactRev");
    assert_eq!(meta[1].2, rev(5, 0));
    let buckets: std::collections::BTreeSet<_> = rows.iter().map(|(b, _, _)| b.clone()).collect();
    for b in [
        "auth",
        "authRoles",
        "authUsers",
        "cluster",
        "lease",
        "members",
    ] {
        assert!(buckets.contains(b.as_bytes()), "{b}");
    }
}

#[test]
fn reads_the_golden_minimal_file() {
    let rows = read_all(GOLDEN_MIN).unwrap();
    assert_eq!(
        rows,
        vec![
            (
                b"key".to_vec(),
                rev(2, 0),
                b"\x0a\x01a\x10\x02\x18\x02\x20\x01\x2a\x01x".to_vec()
            ),
            (
                b"meta".to_vec(),
                b"consistent_index".to_vec(),
                1u64.to_be_bytes().to_vec()
            ),
        ]
    );
}

/// Writes `buckets` in the two passes, returning the file.
fn write(buckets: &[(&[u8], Vec<(Vec<u8>, Vec<u8>)>)]) -> Vec<u8> {
    let mut layout = Layout::default();
    for (name, rows) in buckets {
        let mut p = Planner::default();
        for (k, v) in rows {
            p.push(k, v.len()).unwrap();
        }
        layout.bucket(name, p).unwrap();
    }
    let plan = layout.finish().unwrap();
    let mut e = Emitter::start(&plan, Vec::new()).unwrap();
    for (_, rows) in buckets {
        for (k, v) in rows {
            e.push(k, v).unwrap();
        }
        e.end_bucket().unwrap();
    }
    let (out, n) = e.finish().unwrap();
    assert_eq!((out.len() as u64, n), (plan.bytes(), plan.bytes()));
    out
}

#[test]
fn what_is_written_reads_back() {
    // Enough rows for two branch levels, a value spanning pages, an empty bucket.
    let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..40_000u64)
        .map(|i| (rev(i + 2, 0), format!("value-{i}").into_bytes()))
        .collect();
    let mut meta = vec![(b"consistent_index".to_vec(), 7u64.to_be_bytes().to_vec())];
    meta.push((b"zz-big".to_vec(), vec![7u8; 3 * PAGE_SIZE + 5]));
    let buckets: Vec<(&[u8], Vec<(Vec<u8>, Vec<u8>)>)> = vec![
        (b"alarm", vec![]),
        (b"key", keys.clone()),
        (b"meta", meta.clone()),
    ];
    let file = write(&buckets);
    let rows = read_all(&file).unwrap();
    let want: Rows = buckets
        .iter()
        .flat_map(|(b, rows)| rows.iter().map(|(k, v)| (b.to_vec(), k.clone(), v.clone())))
        .collect();
    assert_eq!(rows.len(), want.len());
    assert!(rows == want);
    let r = Reader::open(file_of(&file), file.len() as u64).unwrap();
    assert_eq!(r.meta().txid, 2);
    assert_eq!(r.meta().freelist, 2);
    // The branch levels exist: more pages than leaves alone would need.
    assert!(r.meta().pages > 100);
}

#[test]
fn an_empty_file_is_valid() {
    let file = write(&[]);
    assert_eq!(
        file.len(),
        4 * PAGE_SIZE,
        "metas, freelist, an empty root leaf"
    );
    assert!(read_all(&file).unwrap().is_empty());
}

#[test]
fn data_that_changed_between_the_passes_is_refused() {
    let mut layout = Layout::default();
    let mut p = Planner::default();
    p.push(b"a", 1).unwrap();
    p.push(b"b", 1).unwrap();
    layout.bucket(b"key", p).unwrap();
    let plan = layout.finish().unwrap();
    let mut e = Emitter::start(&plan, Vec::new()).unwrap();
    e.push(b"a", b"1").unwrap();
    let err = e.push(b"b", b"12").unwrap_err();
    assert!(matches!(err, BoltError::Changed(_)), "{err}");
    let mut e = Emitter::start(&plan, Vec::new()).unwrap();
    e.push(b"a", b"1").unwrap();
    assert!(matches!(e.end_bucket(), Err(BoltError::Changed(_))));
}

#[test]
fn bad_input_to_the_planner_is_refused() {
    let mut p = Planner::default();
    assert!(matches!(p.push(b"", 1), Err(BoltError::KeySize(0))));
    assert!(p.push(&vec![1u8; MAX_KEY + 1], 1).is_err());
    p.push(b"b", 0).unwrap();
    assert!(p.push(b"a", 0).is_err(), "out of order");
    assert!(p.push(b"b", 0).is_err(), "a duplicate");
    let mut l = Layout::default();
    l.bucket(b"b", Planner::default()).unwrap();
    assert!(l.bucket(b"a", Planner::default()).is_err());
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let data = &ETCD_SNAP[..ETCD_SNAP.len() - 32];
    // Every byte of the meta pages, the root leaf and the key bucket's branch, and a
    // sample of the rest, set to values that break lengths, offsets and ids.
    let positions = (0..128)
        .chain(4096..4096 + 128)
        .chain(0xa000..0xa060)
        .chain(0xb000..0xb100)
        .chain((0..data.len()).step_by(97));
    for at in positions {
        for val in [0x00u8, 0xff, 0x7f, 0x10] {
            let mut bad = data.to_vec();
            if bad[at] == val {
                continue;
            }
            bad[at] = val;
            // Errors are fine; a panic fails the test.
            let _ = read_all(&bad);
        }
    }
    for len in [0, 10, 100, 4096, 8192, 20000] {
        assert!(read_all(&data[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn the_meta_checksum_is_fnv1a() {
    // The real file's meta 0 (§7.1).
    let m = Meta::decode(&ETCD_SNAP[16..80]).unwrap();
    assert_eq!(fnv1a64(&ETCD_SNAP[16..72]), 0xd601_60bd_3145_0284);
    assert_eq!(m.encode()[..], ETCD_SNAP[16..80]);
    let mut bad = ETCD_SNAP[16..80].to_vec();
    bad[20] ^= 1;
    assert!(Meta::decode(&bad).is_err());
}
