//! Micro-benchmarks of the Merkle log at one million leaves, in memory (`MemoryNodeStore`):
//! append, inclusion proof, root. The redb-backed log is measured by the `state` bench.
//!
//! `cargo bench -p kyso-bench --bench tlog`; `KYSO_BENCH_TLOG_LEAVES` changes the size.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kyso::tlog::{self, MemoryNodeStore};
use kyso_bench::load::PickRandom;

fn leaves() -> u64 {
    std::env::var("KYSO_BENCH_TLOG_LEAVES").ok().and_then(|value| value.parse().ok()).unwrap_or(1_000_000)
}

fn grown(leaf_count: u64) -> MemoryNodeStore {
    let mut store = MemoryNodeStore::new();
    for index in 0..leaf_count {
        tlog::append(&mut store, index, &index.to_be_bytes()).expect("append");
    }
    store
}

fn merkle(c: &mut Criterion) {
    let leaf_count = leaves();
    let mut store = grown(leaf_count);
    let mut group = c.benchmark_group(format!("merkle_{leaf_count}"));
    group.throughput(Throughput::Elements(1));
    let mut random = PickRandom::new(3);
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| {
            let index = random.next_u64() % leaf_count;
            tlog::inclusion_proof(&store, index, leaf_count).expect("proof")
        })
    });
    group.bench_function("root", |b| b.iter(|| tlog::root(&store, leaf_count).expect("root")));
    // Appends grow the tree past the size above by the number of iterations criterion runs.
    let mut size = leaf_count;
    let leaf = [0x42u8; 600];
    group.bench_function("append", |b| {
        b.iter(|| {
            tlog::append(&mut store, size, &leaf).expect("append");
            size += 1;
        })
    });
    group.finish();
}

criterion_group!(benches, merkle);
criterion_main!(benches);
