//! The tree, inclusion ("record") and consistency ("tree") proofs of
//! `truce_shared::log` against transparency-dev/merkle's RFC 6962 test data,
//! vendored in `vectors/transparency-dev/` (see the README there for the
//! source commit and licence):
//!
//! - `constants.json`: the eight leaf inputs of their reference tree, the
//!   hash of every perfect subtree, and the root of every prefix, 0 to 8.
//! - `inclusion/**.json`, `consistency/**.json`: their proof probes,
//!   unchanged: happy paths and corruptions (wrong index, size, leaf, root,
//!   flipped bits, extra or missing hashes), each with whether it must fail.
//!
//! Our own range proof has no outside vectors; here it is checked against
//! their roots and subtree hashes.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use truce_shared::log::{
    check_range, check_record, check_tree, prove_range, prove_record, prove_tree, range_indexes, record_hash, Hash,
    HashReader, MemoryTree, RangeProof, EMPTY_HASH,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/transparency-dev")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn h(v: &Value) -> Hash {
    Hash(hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap())
}

/// Their reference tree: leaf inputs, node hashes by level then index, and
/// roots by size.
struct Reference {
    leaves: Vec<Vec<u8>>,
    nodes: Vec<Vec<Hash>>,
    roots: Vec<Hash>,
}

fn reference() -> Reference {
    let c = read_json(&dir().join("constants.json"));
    let leaves = c["leaf_inputs"].as_array().unwrap().iter().map(|v| hex::decode(v.as_str().unwrap()).unwrap());
    let nodes = c["node_hashes"].as_array().unwrap().iter().map(|l| l.as_array().unwrap().iter().map(h).collect());
    let roots = c["root_hashes"].as_array().unwrap().iter().map(h).collect();
    let r = Reference { leaves: leaves.collect(), nodes: nodes.collect(), roots };
    assert_eq!((r.leaves.len(), r.roots.len()), (8, 9));
    r
}

/// Our tree of their leaves, built from the leaf hashes.
fn our_tree(leaves: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(record_hash(l)).unwrap();
    }
    t
}

/// Every probe file under `kind/`, with its path relative to the vectors.
fn probes(kind: &str) -> Vec<(String, Value)> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&dir().join(kind), &mut paths);
    paths.sort();
    paths.into_iter().map(|p| (p.strip_prefix(dir()).unwrap().display().to_string(), read_json(&p))).collect()
}

/// A base64 hash of a probe, or `None` if it is not 32 bytes: such a value
/// cannot even be given to our checks (they take `Hash`), as the wire
/// decoder reads exactly 32 bytes.
fn b64(v: &Value) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
    bytes.try_into().ok().map(Hash)
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(vec![]),
        v => v.as_array().unwrap().iter().map(b64).collect(),
    }
}

fn flip(p: &[Hash], i: usize, bit: u8) -> Vec<Hash> {
    let mut p = p.to_vec();
    p[i].0[0] ^= bit;
    p
}

#[test]
fn our_tree_of_their_leaves_has_their_hashes_at_every_size() {
    let r = reference();
    let mut t = MemoryTree::new();
    assert_eq!(t.root().unwrap(), EMPTY_HASH);
    assert_eq!(r.roots[0], EMPTY_HASH, "the empty tree's root is SHA-256 of nothing");
    for (i, leaf) in r.leaves.iter().enumerate() {
        assert_eq!(record_hash(leaf), r.nodes[0][i], "leaf hash {i}");
        t.push(record_hash(leaf)).unwrap();
        assert_eq!(t.root().unwrap(), r.roots[i + 1], "root of size {}", i + 1);
    }
    // Every perfect subtree is stored with their hash.
    for (level, hashes) in r.nodes.iter().enumerate() {
        for (n, want) in hashes.iter().enumerate() {
            let ix = truce_shared::log::stored_hash_index(level as u8, n as u64);
            assert_eq!(t.read_hashes(&[ix]).unwrap(), vec![*want], "node {level}/{n}");
        }
    }
    // A tree of one leaf: the root is the leaf hash.
    assert_eq!(our_tree(&r.leaves[..1]).root().unwrap(), r.nodes[0][0]);
}

#[test]
fn inclusion_probes_pass_and_fail_as_published_and_we_prove_the_same_paths() {
    let r = reference();
    let t = our_tree(&r.leaves);
    let all = probes("inclusion");
    assert_eq!(all.len(), 98, "the vendored inclusion probes");
    let (mut passed, mut proved) = (0, 0);
    for (name, p) in &all {
        let (idx, size) = (p["leafIdx"].as_u64().unwrap(), p["treeSize"].as_u64().unwrap());
        let inputs = (b64(&p["root"]), b64(&p["leafHash"]), proof(&p["proof"]));
        let ok = match &inputs {
            (Some(root), Some(leaf), Some(path)) => check_record(path, size, *root, idx, *leaf).is_ok(),
            _ => false,
        };
        let want_err = p["wantErr"].as_bool().unwrap();
        assert_eq!(ok, !want_err, "{name}: {}", p["desc"]);
        if let (true, (Some(root), Some(leaf), Some(path))) = (ok, inputs) {
            passed += 1;
            if size <= 8 && root == r.roots[size as usize] {
                assert_eq!(leaf, r.nodes[0][idx as usize], "{name}");
                assert_eq!(prove_record(size, idx, &t).unwrap(), path, "{name}: our proof differs");
                proved += 1;
            }
        }
    }
    // Five happy paths over their tree and one single-entry tree of
    // another leaf.
    assert_eq!((passed, proved), (6, 5));
}

#[test]
fn consistency_probes_pass_and_fail_as_published_and_we_prove_the_same() {
    let r = reference();
    let t = our_tree(&r.leaves);
    let all = probes("consistency");
    assert_eq!(all.len(), 98, "the vendored consistency probes");
    let (mut passed, mut proved, mut unrepresentable) = (0, 0, vec![]);
    for (name, p) in &all {
        let (size1, size2) = (p["size1"].as_u64().unwrap(), p["size2"].as_u64().unwrap());
        let inputs = (b64(&p["root1"]), b64(&p["root2"]), proof(&p["proof"]));
        let want_err = p["wantErr"].as_bool().unwrap();
        let ok = match &inputs {
            (Some(root1), Some(root2), Some(path)) => check_tree(path, size2, *root2, size1, *root1).is_ok(),
            _ => {
                if !want_err {
                    unrepresentable.push(name.as_str());
                    continue;
                }
                false
            }
        };
        assert_eq!(ok, !want_err, "{name}: {}", p["desc"]);
        if let (true, (Some(root1), Some(root2), Some(path))) = (ok, inputs) {
            passed += 1;
            if size2 <= 8 && root1 == r.roots[size1 as usize] && root2 == r.roots[size2 as usize] {
                assert_eq!(prove_tree(size2, size1, &t).unwrap(), path, "{name}: our proof differs");
                proved += 1;
            }
        }
    }
    assert_eq!((passed, proved), (5, 5));
    // One probe that must pass has 12-byte "roots" (equal sizes, equal
    // roots, empty proof): not a hash, so not something our API takes.
    // The same case with real hashes is in `edges_of_size_zero_one_same_and_last`.
    assert_eq!(unrepresentable, ["consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"]);
}

#[test]
fn every_proof_of_their_tree_checks_against_their_roots_and_a_flipped_bit_does_not() {
    let r = reference();
    let t = our_tree(&r.leaves);
    for size in 1..=8u64 {
        let root = r.roots[size as usize];
        for i in 0..size {
            let leaf = r.nodes[0][i as usize];
            let p = prove_record(size, i, &t).unwrap();
            check_record(&p, size, root, i, leaf).unwrap();
            for k in 0..p.len() {
                assert!(check_record(&flip(&p, k, 8), size, root, i, leaf).is_err(), "{i} in {size}, hash {k}");
            }
            let mut longer = p.clone();
            longer.push(root);
            assert!(check_record(&longer, size, root, i, leaf).is_err());
            if !p.is_empty() {
                assert!(check_record(&p[..p.len() - 1].to_vec(), size, root, i, leaf).is_err());
            }
            assert!(check_record(&p, size, r.roots[size as usize - 1], i, leaf).is_err(), "another root");
        }
        for old in 1..=size {
            let p = prove_tree(size, old, &t).unwrap();
            check_tree(&p, size, root, old, r.roots[old as usize]).unwrap();
            for k in 0..p.len() {
                let bad = flip(&p, k, 8);
                assert!(check_tree(&bad, size, root, old, r.roots[old as usize]).is_err(), "{old}->{size}, hash {k}");
            }
            if old < size {
                assert!(check_tree(&p, size, root, old, r.roots[old as usize - 1]).is_err(), "wrong old root");
            }
        }
    }
}

#[test]
fn edges_of_size_zero_one_same_and_last() {
    let r = reference();
    let t = our_tree(&r.leaves);
    // Size 0: the empty root; nothing is in it and nothing is consistent with it.
    assert_eq!(MemoryTree::new().root().unwrap(), r.roots[0]);
    assert!(prove_record(0, 0, &t).is_err());
    assert!(check_record(&vec![], 0, EMPTY_HASH, 0, EMPTY_HASH).is_err());
    assert!(prove_tree(0, 0, &t).is_err());
    assert!(check_tree(&vec![], 0, EMPTY_HASH, 0, EMPTY_HASH).is_err());
    assert!(check_tree(&vec![], 3, r.roots[3], 0, EMPTY_HASH).is_err());
    // Size 1: the root is the leaf hash and the proof is empty.
    assert_eq!(r.roots[1], r.nodes[0][0]);
    assert!(prove_record(1, 0, &t).unwrap().is_empty());
    check_record(&vec![], 1, r.roots[1], 0, r.nodes[0][0]).unwrap();
    assert!(check_record(&vec![], 1, r.roots[1], 0, r.nodes[0][1]).is_err());
    // A tree is consistent with itself by the empty proof, and only that.
    for size in 1..=8u64 {
        let root = r.roots[size as usize];
        assert!(prove_tree(size, size, &t).unwrap().is_empty());
        check_tree(&vec![], size, root, size, root).unwrap();
        assert!(check_tree(&vec![root], size, root, size, root).is_err(), "non-empty proof of {size} to itself");
        assert!(check_tree(&vec![], size, root, size, r.roots[size as usize - 1]).is_err());
        // The last leaf, and one past it.
        let last = size - 1;
        let p = prove_record(size, last, &t).unwrap();
        check_record(&p, size, root, last, r.nodes[0][last as usize]).unwrap();
        assert!(prove_record(size, size, &t).is_err());
        assert!(check_record(&p, size, root, size, r.nodes[0][last as usize]).is_err());
    }
    // Consistency goes forward only.
    assert!(prove_tree(3, 5, &t).is_err());
    assert!(check_tree(&vec![], 3, r.roots[3], 5, r.roots[5]).is_err());
}

/// The range proof of `[lo, hi)` in a tree of `size` built from their
/// published subtree hashes alone.
fn range_from_their_nodes(r: &Reference, lo: u64, hi: u64, size: u64) -> RangeProof {
    let (left, right) = range_indexes(lo, hi, size);
    let node = |ix: &u64| {
        let (level, n) = tlog_tiles::split_stored_hash_index(*ix);
        r.nodes[level as usize][n as usize].0
    };
    RangeProof { left: left.iter().map(node).collect(), right: right.iter().map(node).collect() }
}

#[test]
fn range_proofs_check_against_their_roots() {
    let r = reference();
    let t = our_tree(&r.leaves);
    for size in 1..=8u64 {
        let root = r.roots[size as usize];
        for lo in 0..size {
            for hi in lo + 1..=size {
                let run = &r.nodes[0][lo as usize..hi as usize];
                let p = prove_range(lo, hi, size, &t).unwrap();
                assert_eq!(p, range_from_their_nodes(&r, lo, hi, size), "[{lo},{hi}) of {size}");
                check_range(&p, size, &root, lo, run).unwrap();
                // Another tree's root, a neighbouring size, a moved range.
                assert!(check_range(&p, size, &r.roots[size as usize - 1], lo, run).is_err());
                if size < 8 {
                    assert!(check_range(&p, size + 1, &r.roots[size as usize + 1], lo, run).is_err());
                }
                if hi < size {
                    assert!(check_range(&p, size, &root, lo + 1, run).is_err(), "[{lo},{hi}) shifted right");
                }
                for k in 0..p.left.len() {
                    let mut bad = p.clone();
                    bad.left[k][31] ^= 1;
                    assert!(check_range(&bad, size, &root, lo, run).is_err());
                }
                for k in 0..p.right.len() {
                    let mut bad = p.clone();
                    bad.right[k][0] ^= 1;
                    assert!(check_range(&bad, size, &root, lo, run).is_err());
                }
            }
            // A single leaf, as a sync of one report proves it.
            let one = prove_range(lo, lo + 1, size, &t).unwrap();
            check_range(&one, size, &root, lo, &[r.nodes[0][lo as usize]]).unwrap();
            let other = r.nodes[0][((lo + 1) % 8) as usize];
            assert!(check_range(&one, size, &root, lo, &[other]).is_err(), "leaf {lo} of {size} swapped");
        }
    }
}
