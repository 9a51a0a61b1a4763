//! Renders a run's JSON lines (what `kyso-bench` printed) as the markdown tables of
//! BENCHMARKS.md: limits, load with kyso/etcd ratios, certify against its bounds, scale,
//! and the issue's targets, each marked met or missed from the numbers of this run only.

use std::fmt::Write as _;

use serde_json::Value;

use crate::cold::{seconds_or_never, ColdStart, STEADY_WITHIN_SECONDS};

/// Largest batch the single-node driver applies in one transaction (DriverConfig default).
const GROUP_COMMIT_ENTRIES_MAX: f64 = 512.0;

pub fn render(jsonl: &str) -> anyhow::Result<String> {
    let records = parse(jsonl)?;
    fn of_kind<'a>(records: &'a [Value], kind: &'static str) -> impl Iterator<Item = &'a Value> {
        records.iter().filter(move |record| record["kind"] == kind)
    }
    let mut out = String::new();

    writeln!(out, "### Limits of this machine\n")?;
    writeln!(out, "| probe | result |\n|---|---|")?;
    for record in of_kind(&records, "fsync") {
        let probe = &record["probe"];
        writeln!(
            out,
            "| 4 KiB write + fdatasync ({}) | {:.0}/s (p50 {:.2} ms, p99 {:.2} ms) |",
            str_of(&probe["mode"]),
            num(&probe["fsyncs_per_second"]),
            num(&probe["p50_ms"]),
            num(&probe["p99_ms"])
        )?;
    }
    for record in of_kind(&records, "sha256") {
        writeln!(out, "| SHA-256, one core (ring) | {:.0} MB/s |", num(&record["limit"]["bytes_per_second_one_core"]) / 1e6)?;
    }
    writeln!(
        out,
        "\n| signer | raw sign, 1 core | raw sign, all cores | CMS sign, 1 core | CMS sign + check, all cores | CMS verify + chain, 1 core |\n|---|---|---|---|---|---|"
    )?;
    for record in of_kind(&records, "sign") {
        let limit = &record["limit"];
        writeln!(
            out,
            "| {} | {:.0}/s | {:.0}/s ({} threads) | {:.0}/s | {:.0}/s | {:.0}/s |",
            str_of(&limit["algorithm"]),
            num(&limit["raw_sign_per_second_one_core"]),
            num(&limit["raw_sign_per_second_all_cores"]),
            limit["threads"],
            num(&limit["cms_sign_per_second_one_core"]),
            num(&limit["cms_sign_and_check_per_second_all_cores"]),
            num(&limit["cms_verify_and_chain_per_second_one_core"])
        )?;
    }
    for record in of_kind(&records, "record-size") {
        let size = &record["record"];
        writeln!(
            out,
            "\nOne certification record ({} signer, chain of 2, 100 KB document): CMS {} bytes, stored record {} bytes.",
            str_of(&size["algorithm"]),
            size["cms_bytes"],
            size["record_bytes"]
        )?;
    }

    render_criterion(&mut out, &records)?;
    render_load(&mut out, &records)?;
    render_cold(&mut out, &records)?;
    render_bounds(&mut out, &records)?;
    render_scale(&mut out, &records)?;
    render_state(&mut out, &records)?;
    Ok(out)
}

fn render_load(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    let loads: Vec<&Value> = records.iter().filter(|record| record["kind"] == "load").collect();
    if loads.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n### Throughput and latency\n")?;
    writeln!(
        out,
        "| kyso op | clients | kyso nodes | kyso ops/s | p50 ms | p99 ms | p999 ms | errors | etcd op | etcd members | etcd ops/s | etcd p50 ms | etcd p99 ms | kyso/etcd |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for kyso in loads.iter().filter(|record| record["system"] == "kyso") {
        let op = str_of(&kyso["op"]);
        let peer_op = match op {
            "certify" => "put",
            "health" => "–",
            _ => "get",
        };
        let peer = loads
            .iter()
            .find(|record| record["system"] == "etcd" && record["op"] == peer_op && record["clients"] == kyso["clients"]);
        let summary = &kyso["summary"];
        let (peer_cells, ratio) = match peer {
            Some(peer) => {
                let peer_summary = &peer["summary"];
                (
                    format!(
                        "{} | {} | {:.0} | {:.2} | {:.2}",
                        peer_op,
                        peer["nodes"],
                        num(&peer_summary["per_second"]),
                        num(&peer_summary["p50_ms"]),
                        num(&peer_summary["p99_ms"])
                    ),
                    format!("{:.2}", num(&summary["per_second"]) / num(&peer_summary["per_second"]).max(f64::EPSILON)),
                )
            }
            None => (format!("{peer_op} | – | – | – | –"), "–".to_string()),
        };
        writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            op,
            kyso["clients"],
            kyso["nodes"],
            num(&summary["per_second"]),
            num(&summary["p50_ms"]),
            num(&summary["p99_ms"]),
            num(&summary["p999_ms"]),
            errors_cell(summary),
            peer_cells,
            ratio
        )?;
    }
    let etcd_only: Vec<&&Value> = loads.iter().filter(|record| record["system"] == "etcd").collect();
    if !etcd_only.is_empty() {
        writeln!(out, "\n| etcd op | members | clients | ops/s | p50 ms | p99 ms | p999 ms | errors |\n|---|---|---|---|---|---|---|---|")?;
        for record in etcd_only {
            let summary = &record["summary"];
            writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                str_of(&record["op"]),
                record["nodes"],
                record["clients"],
                num(&summary["per_second"]),
                num(&summary["p50_ms"]),
                num(&summary["p99_ms"]),
                num(&summary["p999_ms"]),
                errors_cell(summary)
            )?;
        }
    }
    Ok(())
}

fn render_cold(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    let runs: Vec<&Value> = records.iter().filter(|record| record["kind"] == "cold-start").collect();
    if runs.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\n### Cold start (fresh nodes, a signer no node has unsealed, every client certifying at once)\n"
    )?;
    writeln!(out, "| kyso nodes | clients | run s | first success | certified in the first second | steady ops/s (second half) | steady from (≥ 90 % of it over 1 s) | errors |\n|---|---|---|---|---|---|---|---|")?;
    for run in runs {
        let cold: ColdStart = serde_json::from_value(run["cold"].clone())?;
        writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {:.0} | {} | {} |",
            run["nodes"],
            run["clients"],
            cold.run_seconds,
            seconds_or_never(cold.first_success_seconds, 3),
            cold.first_second,
            cold.steady_per_second,
            seconds_or_never(cold.steady_after_seconds, 1),
            errors_cell(&run["summary"])
        )?;
    }
    Ok(())
}

fn render_bounds(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    let sign = records.iter().find(|record| record["kind"] == "sign" && record["limit"]["algorithm"] == "ecdsa-p256");
    let fsync = records.iter().find(|record| record["kind"] == "fsync" && record["probe"]["mode"] == "append");
    let (Some(sign), Some(fsync)) = (sign, fsync) else { return Ok(()) };
    let signing_bound = num(&sign["limit"]["cms_sign_and_check_per_second_all_cores"]);
    let fsyncs = num(&fsync["probe"]["fsyncs_per_second"]);
    writeln!(out, "\n### Certify against what signing and group commit allow (ECDSA P-256 signer)\n")?;
    writeln!(
        out,
        "Signing bound: CMS sign + check on all cores = {signing_bound:.0}/s. Group-commit bound: fsyncs/s × min(clients, {GROUP_COMMIT_ENTRIES_MAX}) = {fsyncs:.0} × min(clients, {GROUP_COMMIT_ENTRIES_MAX}).\n"
    )?;
    writeln!(out, "| clients | nodes | certify/s | signing bound | group-commit bound | fraction of the lower bound |\n|---|---|---|---|---|---|")?;
    for record in records.iter().filter(|record| record["kind"] == "load" && record["system"] == "kyso" && record["op"] == "certify") {
        let clients = record["clients"].as_f64().unwrap_or(1.0);
        let rate = num(&record["summary"]["per_second"]);
        let commit_bound = fsyncs * clients.min(GROUP_COMMIT_ENTRIES_MAX);
        let bound = signing_bound.min(commit_bound);
        writeln!(
            out,
            "| {} | {} | {rate:.0} | {signing_bound:.0} | {commit_bound:.0} | {:.0} % |",
            record["clients"],
            record["nodes"],
            100.0 * rate / bound.max(f64::EPSILON)
        )?;
    }
    Ok(())
}

fn render_scale(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    let scales: Vec<&Value> = records.iter().filter(|record| record["kind"] == "scale").collect();
    if scales.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n### Scale (one node, bulk-loaded records)\n")?;
    writeln!(
        out,
        "| records | verify by hash /s | p50 ms | p99 ms | verify by code /s | p50 ms | p99 ms | lookup over all records /s | p50 ms | p99 ms | RSS MiB | peak RSS MiB | state.redb bytes/record | start s | first verify s | load s (stage) |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for record in &scales {
        let hash = &record["verify"]["verify-hash"];
        let code = &record["verify"]["verify-code"];
        let lookup = &record["verify"]["lookup-uniform"];
        writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} |",
            record["records"],
            num(&hash["per_second"]),
            num(&hash["p50_ms"]),
            num(&hash["p99_ms"]),
            num(&code["per_second"]),
            num(&code["p50_ms"]),
            num(&code["p99_ms"]),
            num(&lookup["per_second"]),
            num(&lookup["p50_ms"]),
            num(&lookup["p99_ms"]),
            num(&record["rss_bytes"]) / 1048576.0,
            num(&record["peak_rss_bytes"]) / 1048576.0,
            num(&record["state_bytes_per_record"]),
            num(&record["start_seconds"]),
            num(&record["first_verify_seconds"]),
            num(&record["load_seconds"])
        )?;
    }
    if let (Some(first), Some(last)) = (scales.first(), scales.last()) {
        for op in ["verify-hash", "verify-code", "lookup-uniform"] {
            let ratio = num(&last["verify"][op]["p99_ms"]) / num(&first["verify"][op]["p99_ms"]).max(f64::EPSILON);
            writeln!(out, "\n{op}: p99 at {} records is {ratio:.2} × its value at {} records.", last["records"], first["records"])?;
        }
    }
    Ok(())
}

/// Reads every `new/benchmark.json` + `new/estimates.json` pair under criterion's output
/// directory, as JSON records of kind "criterion", sorted by benchmark id.
pub fn criterion_results(dir: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    fn walk(dir: &std::path::Path, found: &mut Vec<Value>) -> anyhow::Result<()> {
        let benchmark = dir.join("new").join("benchmark.json");
        let estimates = dir.join("new").join("estimates.json");
        if benchmark.is_file() && estimates.is_file() {
            let benchmark: Value = serde_json::from_slice(&std::fs::read(&benchmark)?)?;
            let estimates: Value = serde_json::from_slice(&std::fs::read(&estimates)?)?;
            found.push(serde_json::json!({
                "kind": "criterion",
                "id": benchmark["full_id"],
                "throughput": benchmark["throughput"],
                "mean_ns": estimates["mean"]["point_estimate"],
                "median_ns": estimates["median"]["point_estimate"],
            }));
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() && path.file_name().is_some_and(|name| name != "new" && name != "base" && name != "report") {
                walk(&path, found)?;
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(dir, &mut found)?;
    found.sort_by(|first, second| str_of(&first["id"]).cmp(str_of(&second["id"])));
    Ok(found)
}

fn render_criterion(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    let results: Vec<&Value> = records.iter().filter(|record| record["kind"] == "criterion").collect();
    if results.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n### Micro-benchmarks (criterion, median)\n")?;
    writeln!(out, "| benchmark | time per iteration | rate |\n|---|---|---|")?;
    for result in results {
        let median_ns = num(&result["median_ns"]);
        let per_second = 1e9 / median_ns.max(f64::EPSILON);
        let rate = match (&result["throughput"]["Bytes"], &result["throughput"]["Elements"]) {
            (Value::Number(bytes), _) => format!("{:.0} MB/s", bytes.as_f64().unwrap_or(0.0) * per_second / 1e6),
            (_, Value::Number(elements)) => format!("{:.0}/s", elements.as_f64().unwrap_or(0.0) * per_second),
            _ => format!("{per_second:.0}/s"),
        };
        let time = if median_ns >= 1e6 {
            format!("{:.2} ms", median_ns / 1e6)
        } else if median_ns >= 1e3 {
            format!("{:.2} µs", median_ns / 1e3)
        } else {
            format!("{median_ns:.0} ns")
        };
        writeln!(out, "| {} | {time} | {rate} |", str_of(&result["id"]))?;
    }
    Ok(())
}

fn render_state(out: &mut String, records: &[Value]) -> anyhow::Result<()> {
    for stats in records.iter().filter(|record| record["kind"] == "state-stats") {
        let per_record = num(&stats["records"]).max(1.0);
        writeln!(
            out,
            "\n### Where state.redb's bytes go ({} records, file {:.0} MiB long = {:.0} bytes/record, {:.0} bytes/record on disk, {:.0} bytes/record in redb's pages)\n",
            stats["records"],
            num(&stats["file_bytes"]) / 1048576.0,
            num(&stats["file_bytes"]) / per_record,
            num(&stats["disk_bytes"]) / per_record,
            num(&stats["allocated_bytes"]) / per_record
        )?;
        writeln!(out, "| table | entries | stored bytes/record | fragmented bytes/record | metadata bytes/record | tree height |\n|---|---|---|---|---|---|")?;
        for table in stats["tables"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} |",
                str_of(&table["table"]),
                table["entries"],
                num(&table["stored_bytes"]) / per_record,
                num(&table["fragmented_bytes"]) / per_record,
                num(&table["metadata_bytes"]) / per_record,
                table["tree_height"]
            )?;
        }
    }
    for rss in records.iter().filter(|record| record["kind"] == "state-rss") {
        let summary = &rss["summary"];
        let growth = rss["rss_growth"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|point| format!("{} → {:.0} MiB", point["lookups"], num(&point["rss_bytes"]) / 1048576.0))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "\nIn-process lookups by code over all {} records (one thread, redb's default cache): {} lookups at {:.0}/s, p50 {:.3} ms, p99 {:.3} ms; RSS {:.0} MiB after open, {:.0} MiB at the end (peak {:.0} MiB). RSS by lookups done: {growth}.",
            rss["records"],
            rss["lookups"],
            num(&summary["per_second"]),
            num(&summary["p50_ms"]),
            num(&summary["p99_ms"]),
            num(&rss["rss_after_open_bytes"]) / 1048576.0,
            num(&rss["rss_after_bytes"]) / 1048576.0,
            num(&rss["peak_rss_bytes"]) / 1048576.0
        )?;
    }
    Ok(())
}

/// The four ratios of issue 18, from a run of `scripts/bench.sh --short`, and the two verify
/// ratios again in the summary view: each kyso row against its reference measured in the
/// same run, at `clients` closed-loop clients.
/// A row that is missing from the run is named as missing, never guessed.
pub fn ratios(jsonl: &str, clients: u64) -> anyhow::Result<String> {
    let records = parse(jsonl)?;
    let find = |system: &str, op: &str, nodes: u64| {
        records.iter().find(|record| {
            record["kind"] == "load"
                && record["system"] == system
                && record["op"] == op
                && record["nodes"].as_u64() == Some(nodes)
                && record["clients"].as_u64() == Some(clients)
        })
    };
    let rows = [
        ("3-node certify vs etcd 3-member put", ("kyso", "certify", 3), ("etcd", "put", 3), 1.0),
        ("1-node certify vs etcd 3-member put", ("kyso", "certify", 1), ("etcd", "put", 3), 1.5),
        ("1-node verify-hash vs 1-node gRPC health check", ("kyso", "verify-hash", 1), ("kyso", "health", 1), 0.6),
        ("3-node verify-code (linearizable) vs etcd linearizable get", ("kyso", "verify-code", 3), ("etcd", "get", 3), 2.0),
        // The same two reads asking for the summary view (the verdict without the CMS, the
        // chain and the proof): beside the targets' rows above, not in their place.
        ("summary view: 1-node verify-hash vs 1-node gRPC health check", ("kyso", "verify-hash-summary", 1), ("kyso", "health", 1), 0.6),
        ("summary view: 3-node verify-code vs etcd linearizable get", ("kyso", "verify-code-summary", 3), ("etcd", "get", 3), 2.0),
    ];
    let mut out = String::new();
    writeln!(out, "ratios at {clients} clients (target in brackets; p99/p999 in ms):")?;
    for (label, (system, op, nodes), (ref_system, ref_op, ref_nodes), target) in rows {
        let (Some(kyso), Some(reference)) = (find(system, op, nodes), find(ref_system, ref_op, ref_nodes)) else {
            writeln!(out, "  {label}: missing from this run")?;
            continue;
        };
        let (ours, theirs) = (&kyso["summary"], &reference["summary"]);
        let ratio = num(&ours["per_second"]) / num(&theirs["per_second"]).max(f64::MIN_POSITIVE);
        writeln!(
            out,
            "  {label}: {ratio:.2} x [>= {target}] {} | {:.0}/s p99 {:.1} p999 {:.1} errors {} vs {:.0}/s p99 {:.1} p999 {:.1}",
            if ratio >= target { "met" } else { "MISSED" },
            num(&ours["per_second"]),
            num(&ours["p99_ms"]),
            num(&ours["p999_ms"]),
            errors_cell(ours),
            num(&theirs["per_second"]),
            num(&theirs["p99_ms"]),
            num(&theirs["p999_ms"]),
        )?;
    }
    let mut cold_runs = records.iter().filter(|record| record["kind"] == "cold-start").peekable();
    if cold_runs.peek().is_none() {
        writeln!(out, "  cold start: missing from this run")?;
    }
    for record in cold_runs {
        let cold: ColdStart = serde_json::from_value(record["cold"].clone())?;
        writeln!(
            out,
            "  {}-node cold start, {} clients at once: steady from {} [<= {STEADY_WITHIN_SECONDS} s] {} | {:.0}/s steady, first success at {}, {} in the first second, errors {}",
            record["nodes"],
            record["clients"],
            seconds_or_never(cold.steady_after_seconds, 1),
            if cold.met() { "met" } else { "MISSED" },
            cold.steady_per_second,
            seconds_or_never(cold.first_success_seconds, 3),
            cold.first_second,
            errors_cell(&record["summary"]),
        )?;
    }
    Ok(out)
}

fn parse(jsonl: &str) -> anyhow::Result<Vec<Value>> {
    Ok(jsonl.lines().filter(|line| line.trim_start().starts_with('{')).map(serde_json::from_str).collect::<Result<_, _>>()?)
}

fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn errors_cell(summary: &Value) -> String {
    let total = summary["errors"].as_u64().unwrap_or(0);
    if total == 0 {
        return "0".into();
    }
    let kinds = summary["error_kinds"]
        .as_object()
        .map(|kinds| kinds.iter().map(|(kind, count)| format!("{kind} {count}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    format!("{total} ({kinds})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyso_rows_pair_with_etcd_rows_of_the_same_client_count() {
        let jsonl = r#"
{"kind":"load","system":"kyso","op":"certify","nodes":1,"clients":16,"summary":{"per_second":3000.0,"p50_ms":5.0,"p99_ms":9.0,"p999_ms":12.0,"errors":0}}
{"kind":"load","system":"etcd","op":"put","nodes":3,"clients":16,"summary":{"per_second":2000.0,"p50_ms":7.0,"p99_ms":10.0,"p999_ms":15.0,"errors":0}}
{"kind":"fsync","probe":{"mode":"append","fsyncs_per_second":500.0,"p50_ms":2.0,"p99_ms":3.0}}
{"kind":"sign","limit":{"algorithm":"ecdsa-p256","raw_sign_per_second_one_core":1.0,"raw_sign_per_second_all_cores":1.0,"threads":2,"cms_sign_per_second_one_core":1.0,"cms_sign_and_check_per_second_all_cores":6000.0,"cms_verify_and_chain_per_second_one_core":1.0}}
"#;
        let markdown = render(jsonl).unwrap();
        assert!(markdown.contains("| certify | 16 | 1 | 3000 | 5.00 | 9.00 | 12.00 | 0 | put | 3 | 2000 | 7.00 | 10.00 | 1.50 |"), "{markdown}");
        // Bound at 16 clients: min(6000, 500 × 16) = 6000, so 3000 is 50 %.
        assert!(markdown.contains("| 16 | 1 | 3000 | 6000 | 8000 | 50 % |"), "{markdown}");
    }

    #[test]
    fn ratios_pair_each_kyso_row_with_its_reference_of_the_same_run() {
        let row = |system: &str, op: &str, nodes: u64, clients: u64, per_second: f64| {
            format!(r#"{{"kind":"load","system":"{system}","op":"{op}","nodes":{nodes},"clients":{clients},"summary":{{"per_second":{per_second},"p50_ms":1.0,"p99_ms":9.0,"p999_ms":12.0,"errors":0}}}}"#)
        };
        let jsonl = [
            row("kyso", "certify", 3, 64, 1000.0),
            row("kyso", "certify", 3, 16, 9999.0),
            row("kyso", "certify", 1, 64, 3000.0),
            row("etcd", "put", 3, 64, 2000.0),
            row("kyso", "verify-hash", 1, 64, 7000.0),
            row("kyso", "verify-hash-summary", 1, 64, 5000.0),
            row("kyso", "health", 1, 64, 10000.0),
            row("etcd", "get", 3, 64, 4000.0),
        ]
        .join("\n");
        let text = ratios(&jsonl, 64).unwrap();
        assert!(text.contains("3-node certify vs etcd 3-member put: 0.50 x [>= 1] MISSED | 1000/s"), "{text}");
        assert!(text.contains("1-node certify vs etcd 3-member put: 1.50 x [>= 1.5] met"), "{text}");
        assert!(text.contains("1-node verify-hash vs 1-node gRPC health check: 0.70 x [>= 0.6] met"), "{text}");
        assert!(text.contains("3-node verify-code (linearizable) vs etcd linearizable get: missing from this run"), "{text}");
        assert!(text.contains("summary view: 1-node verify-hash vs 1-node gRPC health check: 0.50 x [>= 0.6] MISSED"), "{text}");
        assert!(text.contains("cold start: missing from this run"), "{text}");
    }

    #[test]
    fn ratios_judge_each_cold_start_against_two_seconds() {
        let cold = |nodes: u64, after: &str| {
            format!(r#"{{"kind":"cold-start","system":"kyso","op":"certify","nodes":{nodes},"clients":64,"summary":{{"errors":0}},"cold":{{"run_seconds":6.0,"steady_per_second":700.0,"first_success_seconds":0.412,"first_second":120,"steady_after_seconds":{after}}}}}"#)
        };
        let text = ratios(&[cold(1, "0.7"), cold(3, "2.4")].join("\n"), 64).unwrap();
        assert!(text.contains("1-node cold start, 64 clients at once: steady from 0.7 s [<= 2 s] met | 700/s steady, first success at 0.412 s, 120 in the first second, errors 0"), "{text}");
        assert!(text.contains("3-node cold start, 64 clients at once: steady from 2.4 s [<= 2 s] MISSED"), "{text}");
        assert!(!text.contains("cold start: missing"), "{text}");
        let never = ratios(&cold(3, "null"), 64).unwrap();
        assert!(never.contains("steady from never [<= 2 s] MISSED"), "{never}");
        let nothing = r#"{"kind":"cold-start","system":"kyso","op":"certify","nodes":3,"clients":64,"summary":{"errors":5},"cold":{"run_seconds":6.0,"steady_per_second":0.0,"first_success_seconds":null,"first_second":0,"steady_after_seconds":null}}"#;
        assert!(ratios(nothing, 64).unwrap().contains("first success at never, 0 in the first second"), "a run without successes has no first success");
        let markdown = render(&cold(3, "1.2")).unwrap();
        assert!(markdown.contains("| 3 | 64 | 6 | 0.412 s | 120 | 700 | 1.2 s | 0 |"), "{markdown}");
    }
}
