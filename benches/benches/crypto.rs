//! Micro-benchmarks of the crypto kyso runs per request: SHA-256 bandwidth, raw ring
//! sign and verify for RSA-2048, ECDSA P-256 and Ed25519, and a full detached CMS built
//! and checked as certify and verify do (100 KB document, chain of two certificates).
//!
//! `cargo bench -p kyso-bench --bench crypto`. RSA keys come from the openssl CLI.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kyso::crypto::KeyAlgorithm;
use kyso_bench::fixtures::{Signer, DOCUMENT_SIZE_BYTES_DEFAULT};
use ring::signature;

const ALGORITHMS: [KeyAlgorithm; 3] = [KeyAlgorithm::Rsa, KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519];

fn sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for size in [1024usize, 100 * 1024, 1 << 20] {
        let buffer = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &buffer, |b, buffer| {
            b.iter(|| ring::digest::digest(&ring::digest::SHA256, buffer))
        });
    }
    group.finish();
}

fn verification_algorithm(algorithm: KeyAlgorithm) -> &'static dyn signature::VerificationAlgorithm {
    match algorithm {
        KeyAlgorithm::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
        KeyAlgorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyAlgorithm::Ed25519 => &signature::ED25519,
    }
}

fn raw_signatures(c: &mut Criterion) {
    // About the size of the CMS signed attributes that kyso signs.
    let message = vec![0x31u8; 300];
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(1));
    for algorithm in ALGORITHMS {
        let signer = Signer::new(algorithm).expect("bench signer");
        let signed = signer.key.sign(&message).expect("sign");
        let public = signature::UnparsedPublicKey::new(verification_algorithm(algorithm), signer.key.public_key_bytes().to_vec());
        group.bench_function(BenchmarkId::new("sign", algorithm.as_str()), |b| b.iter(|| signer.key.sign(&message).expect("sign")));
        group.bench_function(BenchmarkId::new("verify", algorithm.as_str()), |b| {
            b.iter(|| public.verify(&message, &signed).expect("verify"))
        });
    }
    group.finish();
}

fn cms(c: &mut Criterion) {
    let document = kyso_bench::target_kyso::document(5, 5, DOCUMENT_SIZE_BYTES_DEFAULT);
    let now = kyso::service::now_unix();
    let mut group = c.benchmark_group("cms");
    group.throughput(Throughput::Elements(1));
    for algorithm in ALGORITHMS {
        let signer = Signer::new(algorithm).expect("bench signer");
        let chain = signer.chain_der();
        let anchors = kyso::crypto::TrustAnchors::from_der_list(vec![signer.ca.cert_der.clone()]).expect("anchors");
        let signed = signer.cms(&document, now).expect("cms");
        group.bench_function(BenchmarkId::new("build", algorithm.as_str()), |b| {
            b.iter(|| kyso::crypto::sign_detached(&document, now, &chain, &signer.key).expect("cms"))
        });
        group.bench_function(BenchmarkId::new("verify", algorithm.as_str()), |b| {
            b.iter(|| kyso::crypto::verify_detached(&signed, &document).expect("verify"))
        });
        // What certify's self-check costs: the document's digest is known, the CMS is
        // decoded. Ed25519 CMS digests with SHA-512 (RFC 8419), so it has no such check.
        if algorithm != KeyAlgorithm::Ed25519 {
            let digest = kyso::domain::Sha256::digest(&document).0;
            group.bench_function(BenchmarkId::new("verify_over_digest", algorithm.as_str()), |b| {
                b.iter(|| kyso::crypto::cms::verify_detached_covered(&signed, kyso::crypto::cms::Covered::Sha256(&digest)).expect("verify"))
            });
        }
        group.bench_function(BenchmarkId::new("validate_chain", algorithm.as_str()), |b| {
            b.iter(|| kyso::crypto::validate_chain(&chain, &anchors, now).expect("chain"))
        });
    }
    group.finish();
}

criterion_group!(benches, sha256, raw_signatures, cms);
criterion_main!(benches);
