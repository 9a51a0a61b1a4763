//! `kyso report`: the province's statistics (ReportService.GetStatistics) as a table,
//! JSON (raw values) or CSV (RFC 4180, a header line, one row per agency and a total row).

use clap::Args;
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, csv_field, print_json, status_error, Connection};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// One agency; without it, every agency your grant lets you read (all, for an admin),
    /// with their total: the province.
    #[arg(long)]
    pub agency: Option<String>,
    /// First day, YYYY-MM-DD in Vietnam time.
    #[arg(long)]
    pub from: String,
    /// Last day (included), YYYY-MM-DD in Vietnam time.
    #[arg(long)]
    pub to: String,
    /// Comma-separated values with a header line instead of text.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

/// The columns of every row, in CSV order (after `row` and `agency_id`).
const COLUMNS: [&str; 11] = [
    "dossiers_archived",
    "files_archived",
    "bytes_archived",
    "results_signed",
    "copies_certified",
    "revocations",
    "verifications_grpc",
    "verifications_public_page",
    "signature_delays",
    "signature_delay_median_seconds",
    "signature_delay_p90_seconds",
];

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let mut client = pb::report_service_client::ReportServiceClient::new(channel(&args.connection).await?);
    let request = pb::GetStatisticsRequest { agency_id: args.agency.clone().unwrap_or_default(), from_date: args.from.clone(), to_date: args.to.clone() };
    let response = client.get_statistics(request).await.map_err(status_error)?.into_inner();
    let agencies: Vec<serde_json::Value> = response.agencies.iter().map(row_json).collect();
    let total = row_json(&response.total.clone().unwrap_or_default());
    if args.connection.json {
        print_json(json!({ "from_date": response.from_date, "to_date": response.to_date, "agencies": agencies, "total": total }));
    } else if args.csv {
        let mut header = vec!["row", "agency_id", "from_date", "to_date"];
        header.extend(COLUMNS);
        println!("{}", header.join(","));
        let rows = agencies.iter().map(|row| ("agency", row)).chain(std::iter::once(("total", &total)));
        for (kind, row) in rows {
            let mut fields = vec![kind.to_string(), csv_field(&row["agency_id"]), response.from_date.clone(), response.to_date.clone()];
            fields.extend(COLUMNS.iter().map(|column| csv_field(&row[*column])));
            println!("{}", fields.join(","));
        }
    } else {
        out!("statistics from {} to {} (Vietnam days)", response.from_date, response.to_date);
        for (name, row) in agencies.iter().map(|row| (row["agency_id"].as_str().unwrap_or_default().to_string(), row)) {
            print_human(&name, row);
        }
        let total_name = if args.agency.is_some() { "total" } else { "total (province)" };
        print_human(total_name, &total);
    }
    Ok(())
}

fn row_json(row: &pb::AgencyStatistics) -> serde_json::Value {
    json!({
        "agency_id": row.agency_id,
        "dossiers_archived": row.dossiers_archived,
        "files_archived": row.files_archived,
        "bytes_archived": row.bytes_archived,
        "results_signed": row.results_signed,
        "copies_certified": row.copies_certified,
        "revocations": row.revocations,
        "verifications_grpc": row.verifications_grpc,
        "verifications_public_page": row.verifications_public_page,
        "signature_delays": row.signature_delays,
        "signature_delay_median_seconds": row.signature_delay_median_seconds,
        "signature_delay_p90_seconds": row.signature_delay_p90_seconds,
    })
}

fn print_human(name: &str, row: &serde_json::Value) {
    let number = |key: &str| row[key].as_u64().unwrap_or(0);
    let delay = |key: &str| row[key].as_u64().map_or_else(|| "-".to_string(), human_duration);
    out!("{name}");
    out!("  dossiers archived   {} ({} files, {} bytes)", number("dossiers_archived"), number("files_archived"), number("bytes_archived"));
    out!("  results signed      {}", number("results_signed"));
    out!("  copies certified    {}", number("copies_certified"));
    out!("  revocations         {}", number("revocations"));
    out!("  verifications       {} over gRPC, {} on the public page", number("verifications_grpc"), number("verifications_public_page"));
    out!(
        "  archive to signature: median {}, 90th percentile {} (over {} signatures; within 19 %)",
        delay("signature_delay_median_seconds"),
        delay("signature_delay_p90_seconds"),
        number("signature_delays")
    );
}

/// Seconds as days, hours, minutes and seconds, largest first (`1d 2h 3m 4s`).
fn human_duration(seconds: u64) -> String {
    let parts = [(seconds / 86_400, "d"), (seconds / 3600 % 24, "h"), (seconds / 60 % 60, "m"), (seconds % 60, "s")];
    let shown: Vec<String> = parts.iter().filter(|(value, _)| *value > 0).map(|(value, unit)| format!("{value}{unit}")).collect();
    if shown.is_empty() { "0s".into() } else { shown.join(" ") }
}
