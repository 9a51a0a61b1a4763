//! Micro-benchmarks of state lookups at one million records, on the redb store the node
//! runs: certification by lookup code, certifications by document hash, and the inclusion
//! proof of a certification's log leaf. Keys are drawn uniformly over every record, so the
//! working set is the whole store, not a hot subset.
//!
//! The store is a data directory made by the bulk loader (`kyso_bench::bulk`):
//! `KYSO_BENCH_STATE_DIR` names one (scripts/bench.sh passes the scale test's, after its
//! node stopped); otherwise one of `KYSO_BENCH_STATE_RECORDS` (default 1,000,000) records
//! is built once under the target directory and reused by later runs.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kyso::state::StateStore;
use kyso_bench::bulk::{self, BulkLoader};
use kyso_bench::load::PickRandom;
use kyso_bench::pki::BenchPki;

fn data_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KYSO_BENCH_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let records: u64 = std::env::var("KYSO_BENCH_STATE_RECORDS").ok().and_then(|value| value.parse().ok()).unwrap_or(1_000_000);
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
    let root = target.join("kyso-bench-cache").join(format!("state-{records}"));
    let pki_dir = root.join("pki");
    let pki = if pki_dir.join(kyso_bench::pki::CA_FILE).exists() {
        BenchPki::load(&pki_dir).expect("cached bench PKI")
    } else {
        BenchPki::create(&pki_dir, kyso::crypto::KeyAlgorithm::EcdsaP256).expect("bench PKI")
    };
    let data = root.join("data");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut loader = BulkLoader::open(&data, &pki, 2000).expect("bulk loader");
    if loader.progress().records < records {
        eprintln!("building a store of {records} records in {} (once)", data.display());
        runtime.block_on(loader.load_to(records)).expect("bulk load");
    }
    data
}

fn lookups(c: &mut Criterion) {
    let dir = data_dir();
    let progress = bulk::read_progress(&dir).expect("bench-load.json");
    let store = StateStore::open(&dir.join("state.redb")).expect("state store");
    let records = progress.records;
    let mut group = c.benchmark_group(format!("state_{records}"));
    group.throughput(Throughput::Elements(1));
    let mut random = PickRandom::new(17);
    group.bench_function("certification_by_code", |b| {
        b.iter(|| {
            let index = random.next_u64() % records;
            store.certification(&bulk::record_code(index)).expect("lookup").expect("present")
        })
    });
    group.bench_function("certifications_by_hash", |b| {
        b.iter(|| {
            let index = random.next_u64() % records;
            let found = store.certifications_of(&bulk::record_document(index, progress.samples)).expect("lookup");
            assert_eq!(found.len(), 1);
        })
    });
    let leaves = store.tlog_size().expect("log size");
    group.bench_function("log_inclusion_proof", |b| {
        b.iter(|| {
            let index = random.next_u64() % leaves;
            store.tlog_inclusion(index, 0).expect("proof").expect("leaf exists")
        })
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
