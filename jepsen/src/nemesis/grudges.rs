//! Partition shapes, as grudges (who drops whose traffic). Pure, so the shapes are tested
//! without a network.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{cut, Grudge};

/// The shape of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One random member alone.
    One,
    /// The leader alone (a random member if there is none).
    Leader,
    /// Two random halves.
    Halves,
    /// A ring in random order: every member sees a majority, no two the same one.
    Ring,
    /// Two halves and one member between them that sees both.
    Bridge,
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("n{}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The grudge for a partition shape, and a description for the history.
pub fn for_shape(
    shape: Shape,
    n: usize,
    leader: Option<usize>,
    rng: &mut impl Rng,
) -> (Grudge, String) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    match shape {
        Shape::One | Shape::Leader => {
            let one = match shape {
                Shape::Leader => leader.unwrap_or(order[0]),
                _ => order[0],
            };
            let rest: Vec<usize> = (0..n).filter(|&i| i != one).collect();
            let g = cut(n, &[vec![one], rest.clone()]);
            (g, format!("[{}] | [{}]", names(&[one]), names(&rest)))
        }
        Shape::Halves => {
            let (a, b) = order.split_at(n / 2);
            let g = cut(n, &[a.to_vec(), b.to_vec()]);
            (g, format!("[{}] | [{}]", names(a), names(b)))
        }
        Shape::Bridge => {
            let mid = n / 2;
            let (a, b) = (order[..mid].to_vec(), order[mid + 1..].to_vec());
            let g = cut(n, &[a.clone(), b.clone()]);
            (
                g,
                format!(
                    "[{}] | {} | [{}]",
                    names(&a),
                    names(&[order[mid]]),
                    names(&b)
                ),
            )
        }
        Shape::Ring => ring(n, &order),
    }
}

/// Members on a ring (in `order`), each linked only to those within the distance that makes
/// its view a bare majority, so every member sees a majority and no two see the same one.
/// With three members every pair is adjacent, so one link is cut instead: the two ends each
/// see a different majority, the middle one sees all.
fn ring(n: usize, order: &[usize]) -> (Grudge, String) {
    let majority = n / 2 + 1;
    let reach = (majority - 1).div_ceil(2);
    let mut g: Grudge = vec![BTreeSet::new(); n];
    for i in 0..n {
        for j in 0..n {
            let d = (i as isize - j as isize).unsigned_abs();
            let d = d.min(n - d);
            if i != j && d > reach {
                g[order[i]].insert(order[j]);
            }
        }
    }
    if g.iter().all(|s| s.is_empty()) && n >= 3 {
        let (a, b) = (order[0], order[2]);
        g[a].insert(b);
        g[b].insert(a);
    }
    let ring: Vec<String> = order.iter().map(|i| format!("n{}", i + 1)).collect();
    let cuts: Vec<String> = g
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.iter().filter(move |&&j| j > i).map(move |&j| (i, j)))
        .map(|(i, j)| format!("n{}-n{}", i + 1, j + 1))
        .collect();
    (g, format!("ring {} cut {}", ring.join(" "), cuts.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Which members each member can reach (itself included).
    fn views(g: &Grudge) -> Vec<BTreeSet<usize>> {
        (0..g.len())
            .map(|i| (0..g.len()).filter(|j| !g[i].contains(j)).collect())
            .collect()
    }

    #[test]
    fn ring_gives_everyone_a_distinct_majority() {
        for n in [3usize, 5, 7] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
            let (g, _) = for_shape(Shape::Ring, n, None, &mut rng);
            let v = views(&g);
            for view in &v {
                assert!(view.len() > n / 2, "n={n}: {v:?}");
            }
            let distinct: BTreeSet<_> = v.iter().collect();
            assert!(distinct.len() >= 3, "n={n}: {v:?}");
            // Links are cut in both directions.
            for i in 0..n {
                for &j in &g[i] {
                    assert!(g[j].contains(&i));
                }
            }
        }
    }

    #[test]
    fn halves_and_bridge_leave_no_majority_side_for_the_minority() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (g, _) = for_shape(Shape::Halves, 5, None, &mut rng);
        let sizes: BTreeSet<usize> = views(&g).iter().map(|v| v.len()).collect();
        assert_eq!(sizes, [2, 3].into_iter().collect());
        let (g, _) = for_shape(Shape::Bridge, 5, None, &mut rng);
        let sizes: Vec<usize> = views(&g).iter().map(|v| v.len()).collect();
        assert_eq!(sizes.iter().filter(|&&s| s == 5).count(), 1, "{sizes:?}");
    }

    #[test]
    fn partition_leader_isolates_the_leader() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (g, _) = for_shape(Shape::Leader, 3, Some(2), &mut rng);
        assert_eq!(g[2], [0, 1].into_iter().collect());
    }
}
