//! `ReportService`: the province's statistics (`Kyso::statistics`) as protobuf. Roles are
//! in `api::auth`'s table; the agency scope is the service's.

use kyso_cluster::Proposer;
use kyso_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::grpc::{caller_of, GrpcApi};
use crate::statistics::{format_day, Summary};

#[tonic::async_trait]
impl<P: Proposer> pb::report_service_server::ReportService for GrpcApi<P> {
    #[tracing::instrument(skip_all)]
    async fn get_statistics(&self, request: Request<pb::GetStatisticsRequest>) -> Result<Response<pb::GetStatisticsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let report = self.bounded(self.kyso.statistics(&caller, &request.agency_id, &request.from_date, &request.to_date)).await?;
        Ok(Response::new(pb::GetStatisticsResponse {
            from_date: format_day(report.first_day),
            to_date: format_day(report.last_day),
            agencies: report.agencies.iter().map(|(agency_id, summary)| statistics_to_proto(agency_id, summary)).collect(),
            total: Some(statistics_to_proto("", &report.total)),
        }))
    }
}

fn statistics_to_proto(agency_id: &str, summary: &Summary) -> pb::AgencyStatistics {
    pb::AgencyStatistics {
        agency_id: agency_id.to_string(),
        dossiers_archived: summary.counts.dossiers_archived,
        files_archived: summary.counts.files_archived,
        bytes_archived: summary.counts.bytes_archived,
        results_signed: summary.counts.results_signed,
        copies_certified: summary.counts.copies_certified,
        revocations: summary.counts.revocations,
        verifications_grpc: summary.counts.verifications_grpc,
        verifications_public_page: summary.counts.verifications_public_page,
        signature_delays: summary.signature_delays(),
        signature_delay_median_seconds: summary.signature_delay_median_seconds(),
        signature_delay_p90_seconds: summary.signature_delay_p90_seconds(),
    }
}
