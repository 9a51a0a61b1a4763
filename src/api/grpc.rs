//! tonic services for kyso.v1. Each handler decodes, calls one service method under the
//! request timeout, and encodes; streams are bounded in message size, count, idle time and
//! total time. The caller ([`Caller`]) comes from the auth layer (`api::auth`), which has
//! already checked the RPC's roles; services check agency and signer scopes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use kyso_cluster::Proposer;
use kyso_proto::v1 as pb;
use kyso_proto::v1::upload_dossier_request::Part;
use kyso_proto::v1::verify_request::Subject;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use super::auth::RequestSpan;
use super::convert;
use super::status::to_status;
use crate::archive::{SpoolWriter, SpooledBlob};
use crate::access::{Actor, Caller};
use crate::domain::{ArchivedFile, Sha256};
use crate::service::archive::NewDossier;
use crate::service::signing::{CertifyItem, NewSigner, SubmittedSignature};
use crate::service::verify::{VerifySubject, VerifyView};
use crate::service::{Kyso, ServiceError};

/// Bytes per `BlobChunk` sent by `GetBlob`.
pub const BLOB_CHUNK_SIZE_BYTES: usize = 1024 * 1024;
/// Responses buffered per outbound stream before the handler waits for the client.
pub const STREAM_BUFFER_MESSAGES_MAX: usize = 16;
/// Longest `correlation_id` of a verify request, in bytes.
pub const CORRELATION_ID_BYTES_MAX: usize = 128;

/// The caller the auth layer attached to this request. A request that did not pass the
/// layer (an in-process call) is anonymous, with the public role only.
pub(crate) fn caller_of<T>(request: &Request<T>) -> Caller {
    request.extensions().get::<Caller>().cloned().unwrap_or_else(|| Caller::public(Actor::anonymous()))
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC face of a node; cheap to clone.
pub struct GrpcApi<P: Proposer> {
    pub(crate) kyso: Arc<Kyso<P>>,
    uploads: Arc<Semaphore>,
    /// Uploads in progress per client (certificate fingerprint, or actor name).
    uploads_per_client: super::slots::PerClientSlots,
}

impl<P: Proposer> Clone for GrpcApi<P> {
    fn clone(&self) -> Self {
        GrpcApi { kyso: self.kyso.clone(), uploads: self.uploads.clone(), uploads_per_client: self.uploads_per_client.clone() }
    }
}

/// The pace an upload must keep: after the grace period, on average at least
/// `bytes_per_second_min` since the stream began.
struct UploadPace {
    started: tokio::time::Instant,
    received_bytes: u64,
    bytes_per_second_min: u64,
    grace: Duration,
}

impl UploadPace {
    /// The latest moment the next bytes may arrive without the stream falling below pace.
    fn deadline(&self) -> tokio::time::Instant {
        self.started + self.grace + Duration::from_secs_f64(self.received_bytes as f64 / self.bytes_per_second_min as f64)
    }

    fn too_slow(&self) -> Status {
        Status::resource_exhausted(format!(
            "the upload sent {} bytes in {} s, slower than the minimum of {} bytes/s; it gave its slot back, send it again over a better connection",
            self.received_bytes,
            self.started.elapsed().as_secs(),
            self.bytes_per_second_min
        ))
    }
}

impl<P: Proposer> GrpcApi<P> {
    pub fn new(kyso: Arc<Kyso<P>>) -> Self {
        let uploads = Arc::new(Semaphore::new(kyso.limits().concurrent_uploads_max));
        GrpcApi { kyso, uploads, uploads_per_client: Default::default() }
    }

    /// Takes one of the caller's own upload slots, or refuses at once when it holds
    /// `uploads_per_client_max` already.
    fn client_upload_slot(&self, caller: &Caller) -> Result<super::slots::Slot, Status> {
        let client = caller.actor.certificate_sha256.map(|hash| hash.to_hex()).unwrap_or_else(|| caller.actor.name.clone());
        let limit = self.kyso.limits().uploads_per_client_max;
        self.uploads_per_client.take(client, limit).ok_or_else(|| {
            Status::resource_exhausted(format!("{} already has {limit} uploads in progress on this node; wait for one to finish", caller.actor))
        })
    }

    /// Next message of an upload, or a precise error if the stream stalls or falls below
    /// the minimum pace.
    async fn next_upload_message(
        &self,
        stream: &mut Streaming<pb::UploadDossierRequest>,
        pace: &mut UploadPace,
    ) -> Result<Option<pb::UploadDossierRequest>, Status> {
        let stall = tokio::time::Instant::now() + self.request_timeout();
        let deadline = pace.deadline().min(stall);
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => {
                pace.received_bytes += prost::Message::encoded_len(&message) as u64;
                Ok(Some(message))
            }
            Ok(other) => other,
            Err(_) if deadline < stall => Err(pace.too_slow()),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no message for {} s; the upload stalled and was abandoned",
                self.request_timeout().as_secs()
            ))),
        }
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.kyso.limits().request_timeout_seconds)
    }

    /// Runs a service call under the request timeout.
    pub(crate) async fn bounded<T>(&self, call: impl std::future::Future<Output = Result<T, ServiceError>>) -> Result<T, Status> {
        match tokio::time::timeout(self.request_timeout(), call).await {
            Ok(result) => result.map_err(to_status),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "request took longer than {} s; retry with the same request_id",
                self.request_timeout().as_secs()
            ))),
        }
    }

    /// Next message of a client stream, or a precise error if it stalls.
    pub(crate) async fn next_message<T>(&self, stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
        match tokio::time::timeout(self.request_timeout(), stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no message for {} s; the upload stalled and was abandoned",
                self.request_timeout().as_secs()
            ))),
        }
    }
}

/// A file being received: its bytes so far in a spool file, hashed as they are written.
/// Dropping it (a failed or abandoned upload) deletes the spool file.
struct IncomingFile {
    name: String,
    content_type: String,
    declared_size_bytes: u64,
    content: SpoolWriter,
}

impl IncomingFile {
    async fn finish(self) -> Result<(String, String, SpooledBlob), Status> {
        let size = self.content.size_bytes();
        if size == 0 {
            return Err(Status::invalid_argument(format!("file {:?} is empty; send its bytes in chunk messages", self.name)));
        }
        if self.declared_size_bytes != 0 && self.declared_size_bytes != size {
            return Err(Status::invalid_argument(format!(
                "file {:?} declared {} bytes but {} arrived; the upload was cut short, send it again",
                self.name, self.declared_size_bytes, size
            )));
        }
        let blob = self.content.finish().await.map_err(|error| to_status(error.into()))?;
        Ok((self.name, self.content_type, blob))
    }
}

impl<P: Proposer> GrpcApi<P> {
    /// Receives an upload. The slots (the caller's own, then one of the node's) are taken
    /// only after the metadata passed its checks, and the stream must keep the minimum pace
    /// from its first byte: a client cannot hold a slot by trickling.
    async fn receive_dossier(&self, caller: &Caller, span: &RequestSpan, mut stream: Streaming<pb::UploadDossierRequest>) -> Result<pb::UploadDossierResponse, Status> {
        let limits = self.kyso.limits();
        let mut pace = UploadPace {
            started: tokio::time::Instant::now(),
            received_bytes: 0,
            bytes_per_second_min: limits.upload_throughput_bytes_per_second_min,
            grace: Duration::from_secs(limits.upload_grace_seconds),
        };
        let metadata = match self.next_upload_message(&mut stream, &mut pace).await?.and_then(|message| message.part) {
            Some(Part::Metadata(metadata)) => metadata,
            _ => return Err(Status::invalid_argument("the first message of UploadDossier must be metadata")),
        };
        span.record_request_id(&metadata.request_id);
        let mut dossier = NewDossier {
            request_id: metadata.request_id,
            agency_id: metadata.agency_id,
            procedure_code: metadata.procedure_code,
            dossier_number: metadata.dossier_number,
            received_date: metadata.received_date,
            private_fields: metadata.private_fields.into_iter().collect(),
        };
        self.kyso.check_new_dossier(caller, &mut dossier).map_err(to_status)?;
        let _client_slot = self.client_upload_slot(caller)?;
        let _node_slot = tokio::time::timeout(self.request_timeout(), self.uploads.acquire())
            .await
            .map_err(|_| Status::resource_exhausted("too many uploads in progress on this node; retry shortly"))?
            .map_err(|_| Status::unavailable("node is shutting down"))?;
        // Waiting for a slot is the node's delay, not the client's: the pace starts now.
        pace.started = tokio::time::Instant::now();
        pace.received_bytes = 0;
        let mut files: Vec<ArchivedFile> = Vec::new();
        let mut current: Option<IncomingFile> = None;
        while let Some(message) = self.next_upload_message(&mut stream, &mut pace).await? {
            match message.part {
                Some(Part::FileStart(start)) => {
                    if let Some(file) = current.take() {
                        files.push(self.store(file).await?);
                    }
                    let (name, content_type) = self.kyso.check_file_start(&start.name, &start.content_type, files.len()).map_err(to_status)?;
                    current = Some(self.start_file(pb::FileStart { name, content_type, ..start }).await?);
                }
                Some(Part::Chunk(chunk)) => self.receive_chunk(current.as_mut(), &chunk).await?,
                Some(Part::Metadata(_)) => return Err(Status::invalid_argument("metadata may be sent only once, first")),
                None => return Err(Status::invalid_argument("empty UploadDossier message")),
            }
        }
        if let Some(file) = current.take() {
            files.push(self.store(file).await?);
        }
        let record = self.bounded(self.kyso.archive_dossier(caller, dossier, files)).await?;
        Ok(pb::UploadDossierResponse {
            dossier_id: record.id.clone(),
            files: record.files.iter().map(convert::file_to_proto).collect(),
        })
    }

    async fn start_file(&self, start: pb::FileStart) -> Result<IncomingFile, Status> {
        let limit = self.kyso.limits().file_size_bytes_max;
        if start.declared_size_bytes > limit {
            return Err(file_too_large(&start.name, start.declared_size_bytes, limit));
        }
        Ok(IncomingFile {
            name: start.name,
            content_type: start.content_type,
            declared_size_bytes: start.declared_size_bytes,
            content: self.kyso.new_upload_file().await.map_err(to_status)?,
        })
    }

    async fn receive_chunk(&self, current: Option<&mut IncomingFile>, chunk: &[u8]) -> Result<(), Status> {
        let file = current.ok_or_else(|| Status::invalid_argument("a chunk arrived before any file_start"))?;
        let limits = self.kyso.limits();
        if chunk.len() > limits.upload_chunk_size_bytes_max {
            return Err(Status::invalid_argument(format!(
                "chunk of {} bytes exceeds {} bytes; send smaller chunks",
                chunk.len(),
                limits.upload_chunk_size_bytes_max
            )));
        }
        let size = file.content.size_bytes() + chunk.len() as u64;
        if size > limits.file_size_bytes_max {
            return Err(file_too_large(&file.name, size, limits.file_size_bytes_max));
        }
        file.content.write(chunk).await.map_err(|error| to_status(error.into()))
    }

    async fn store(&self, file: IncomingFile) -> Result<ArchivedFile, Status> {
        let (name, content_type, blob) = file.finish().await?;
        self.bounded(self.kyso.store_file(name, content_type, blob)).await
    }
}

fn file_too_large(name: &str, size: u64, limit: u64) -> Status {
    Status::resource_exhausted(format!(
        "file {name:?} is over the limit of {limit} bytes (at least {size}); split or compress the scan"
    ))
}

#[tonic::async_trait]
impl<P: Proposer> pb::archive_service_server::ArchiveService for GrpcApi<P> {
    #[tracing::instrument(skip_all)]
    async fn upload_dossier(
        &self,
        request: Request<Streaming<pb::UploadDossierRequest>>,
    ) -> Result<Response<pb::UploadDossierResponse>, Status> {
        let caller = caller_of(&request);
        let span = RequestSpan::of(request.extensions());
        let stream_max = Duration::from_secs(self.kyso.limits().upload_stream_seconds_max);
        match tokio::time::timeout(stream_max, self.receive_dossier(&caller, &span, request.into_inner())).await {
            Ok(result) => result.map(Response::new),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the upload lasted more than {} s and was cut; split the dossier or ask the operator to raise limits.upload_stream_seconds_max",
                stream_max.as_secs()
            ))),
        }
    }

    async fn get_dossier(&self, request: Request<pb::GetDossierRequest>) -> Result<Response<pb::Dossier>, Status> {
        let caller = caller_of(&request);
        let id = request.into_inner().dossier_id;
        let dossier = self.bounded(self.kyso.get_dossier(&caller, &id)).await?;
        Ok(Response::new(convert::dossier_to_proto(&dossier)))
    }

    type GetBlobStream = ResponseStream<pb::BlobChunk>;

    async fn get_blob(&self, request: Request<pb::GetBlobRequest>) -> Result<Response<Self::GetBlobStream>, Status> {
        // Another node asking is looking for a copy: it gets this node's own copy or
        // NOT_FOUND, never a fetch onward (nodes asking each other in turn would fan out
        // until every call timed out).
        let caller = caller_of(&request);
        let bytes = request.into_inner().sha256;
        let hash = Sha256::from_slice(&bytes)
            .ok_or_else(|| Status::invalid_argument(format!("sha256 must be 32 bytes, got {}", bytes.len())))?;
        let mut blob = self.bounded(self.kyso.open_blob(&caller, &hash)).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER_MESSAGES_MAX);
        let timeout = self.request_timeout();
        // Streams the blob with at most STREAM_BUFFER_MESSAGES_MAX chunks in memory; the
        // last message is DATA_LOSS instead of the end when the bytes fail their hash.
        tokio::spawn(async move {
            let chunks_max = blob.size_bytes() / BLOB_CHUNK_SIZE_BYTES as u64 + 2;
            for _ in 0..chunks_max {
                let item = match tokio::time::timeout(timeout, blob.next_chunk(BLOB_CHUNK_SIZE_BYTES)).await {
                    Ok(Ok(Some(data))) => Ok(pb::BlobChunk { data: data.to_vec() }),
                    Ok(Ok(None)) => return,
                    Ok(Err(error)) => Err(to_status(error.into())),
                    Err(_) => Err(Status::unavailable(format!(
                        "object storage sent nothing for {} s while streaming blob {hash}; retry",
                        timeout.as_secs()
                    ))),
                };
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    return;
                }
            }
            let _ = sender
                .send(Err(Status::data_loss(format!("blob {hash} is longer than the store reported; run `kyso scrub`"))))
                .await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}

#[tonic::async_trait]
impl<P: Proposer> pb::signing_service_server::SigningService for GrpcApi<P> {
    #[tracing::instrument(skip_all)]
    async fn register_agency_seal(&self, request: Request<pb::RegisterAgencySealRequest>) -> Result<Response<pb::AgencySeal>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let seal = self
            .bounded(self.kyso.register_agency_seal(&caller, &request.request_id, &request.agency_id, &request.certificate_chain, &request.private_key_pkcs8))
            .await?;
        Ok(Response::new(pb::AgencySeal { agency_id: seal.agency_id, subject: seal.subject, registered_at_unix: seal.registered_at_unix }))
    }

    #[tracing::instrument(skip_all)]
    async fn register_signer(&self, request: Request<pb::RegisterSignerRequest>) -> Result<Response<pb::Signer>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let new = NewSigner {
            request_id: request.request_id,
            name: request.name,
            title: request.title,
            agency_ids: request.agency_ids,
            certificate_chain: request.certificate_chain,
            private_key: request.private_key_pkcs8,
            pin: request.pin,
        };
        let signer = self.bounded(self.kyso.register_signer(&caller, new)).await?;
        Ok(Response::new(convert::signer_to_proto(&signer)))
    }

    #[tracing::instrument(skip_all)]
    async fn certify(&self, request: Request<pb::CertifyRequest>) -> Result<Response<pb::Certification>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let mut request = request.into_inner();
        let request_id = request.request_id.clone();
        let pin = zeroize::Zeroizing::new(std::mem::take(&mut request.pin));
        let mut certifications = self.bounded(self.kyso.certify(&caller, &request_id, vec![certify_item(request)], &pin)).await?;
        let certification = certifications.pop().ok_or_else(|| Status::internal("certify produced no certification"))?;
        Ok(Response::new(convert::certification_to_proto(&certification)))
    }

    #[tracing::instrument(skip_all)]
    async fn certify_batch(&self, request: Request<pb::CertifyBatchRequest>) -> Result<Response<pb::CertifyBatchResponse>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let pin = zeroize::Zeroizing::new(request.pin);
        let items = request.items.into_iter().map(certify_item).collect();
        let certifications = self.bounded(self.kyso.certify(&caller, &request.request_id, items, &pin)).await?;
        Ok(Response::new(pb::CertifyBatchResponse {
            certifications: certifications.iter().map(convert::certification_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_certification(
        &self,
        request: Request<pb::RevokeCertificationRequest>,
    ) -> Result<Response<pb::Certification>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let certification = self.bounded(self.kyso.revoke(&caller, &request.request_id, &request.lookup_code, &request.reason)).await?;
        Ok(Response::new(convert::certification_to_proto(&certification)))
    }

    #[tracing::instrument(skip_all)]
    async fn submit_signature(&self, request: Request<pb::SubmitSignatureRequest>) -> Result<Response<pb::Certification>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let submitted = SubmittedSignature {
            item: CertifyItem {
                document_sha256: request.document_sha256,
                kind: convert::kind_from_proto(request.kind),
                agency_id: request.agency_id,
                signer_id: request.signer_id,
                dossier_id: request.dossier_id,
            },
            cms_der: request.cms_signature,
        };
        let certification = self.bounded(self.kyso.submit_signature(&caller, &request.request_id, submitted)).await?;
        Ok(Response::new(convert::certification_to_proto(&certification)))
    }

    #[tracing::instrument(skip_all)]
    async fn import_crl(&self, request: Request<pb::ImportCrlRequest>) -> Result<Response<pb::ImportCrlResponse>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let limit = self.kyso.limits().crl_size_bytes_max;
        if request.crl.len() > limit {
            return Err(Status::invalid_argument(format!("crl is {} bytes; the limit is {limit}", request.crl.len())));
        }
        let imported = self.bounded(self.kyso.import_crl(&caller, &request.request_id, &request.crl)).await?;
        Ok(Response::new(pb::ImportCrlResponse {
            revoked: imported.revoked.iter().map(convert::signer_revocation_to_proto).collect(),
            embedded_in_certified_pdfs: imported.embedded_in_certified_pdfs,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unlock_signer(&self, request: Request<pb::UnlockSignerRequest>) -> Result<Response<pb::Signer>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let signer = self.bounded(self.kyso.unlock_signer(&caller, &request.request_id, &request.signer_id)).await?;
        Ok(Response::new(convert::signer_to_proto(&signer)))
    }

    #[tracing::instrument(skip_all)]
    async fn change_signer_pin(&self, request: Request<pb::ChangeSignerPinRequest>) -> Result<Response<pb::Signer>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let (pin, new_pin) = (zeroize::Zeroizing::new(request.pin), zeroize::Zeroizing::new(request.new_pin));
        let signer = self.bounded(self.kyso.change_pin(&caller, &request.request_id, &request.signer_id, &pin, &new_pin)).await?;
        Ok(Response::new(convert::signer_to_proto(&signer)))
    }

    #[tracing::instrument(skip_all)]
    async fn prepare_token_signature(
        &self,
        request: Request<pb::PrepareTokenSignatureRequest>,
    ) -> Result<Response<pb::PrepareTokenSignatureResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let item = CertifyItem {
            document_sha256: request.document_sha256,
            kind: convert::kind_from_proto(request.kind),
            agency_id: request.agency_id,
            signer_id: request.signer_id,
            dossier_id: request.dossier_id,
        };
        let prepared = self.bounded(self.kyso.prepare_token_signature(&caller, item)).await?;
        Ok(Response::new(pb::PrepareTokenSignatureResponse {
            prepared_id: prepared.prepared_id,
            node_id: prepared.node_id,
            node_address: prepared.node_address,
            signed_attributes_der: prepared.signed_attributes_der,
            byte_range_sha256: prepared.byte_range_sha256.0.to_vec(),
            byte_range: prepared.byte_range.iter().map(|offset| *offset as u64).collect(),
            key_algorithm: prepared.key_algorithm.to_string(),
            lookup_code: prepared.lookup_code,
            signed_at_unix: prepared.signed_at_unix,
            register_year: prepared.register_year,
            register_number: prepared.register_number,
            expires_at_unix: prepared.expires_at_unix,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_token_signature(&self, request: Request<pb::CompleteTokenSignatureRequest>) -> Result<Response<pb::Certification>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let certification = self
            .bounded(self.kyso.complete_token_signature(&caller, &request.request_id, &request.prepared_id, request.signature_value))
            .await?;
        Ok(Response::new(convert::certification_to_proto(&certification)))
    }
}

fn certify_item(request: pb::CertifyRequest) -> CertifyItem {
    CertifyItem {
        document_sha256: request.document_sha256,
        kind: convert::kind_from_proto(request.kind),
        agency_id: request.agency_id,
        signer_id: request.signer_id,
        dossier_id: request.dossier_id,
    }
}

fn verify_subject(subject: Option<Subject>) -> Result<VerifySubject, ServiceError> {
    match subject {
        Some(Subject::File(file)) => Ok(VerifySubject::File(Bytes::from(file))),
        Some(Subject::Sha256(hash)) => Ok(VerifySubject::Sha256(hash)),
        Some(Subject::LookupCode(code)) => Ok(VerifySubject::LookupCode(code)),
        Some(Subject::Pdf(_)) => Err(ServiceError::Internal("a received pdf is verified apart from other subjects".into())),
        None => Err(ServiceError::InvalidArgument("say what to verify: file, sha256, lookup_code or pdf".into())),
    }
}

impl<P: Proposer> GrpcApi<P> {
    async fn verify_one(&self, request: pb::VerifyRequest) -> Result<pb::VerifyResponse, Status> {
        self.bounded(self.kyso.verify_barrier()).await?;
        self.verify_one_after_barrier(request).await
    }

    async fn verify_one_after_barrier(&self, request: pb::VerifyRequest) -> Result<pb::VerifyResponse, Status> {
        if request.correlation_id.len() > CORRELATION_ID_BYTES_MAX {
            return Err(Status::invalid_argument(format!("correlation_id is longer than {CORRELATION_ID_BYTES_MAX} bytes")));
        }
        let view = convert::verify_view_from_proto(request.view)?;
        if let Some(Subject::Pdf(pdf)) = request.subject {
            return self.verify_received_pdf(Bytes::from(pdf), request.correlation_id, view).await;
        }
        let subject = verify_subject(request.subject).map_err(to_status)?;
        let verification = self.bounded(self.kyso.verify_after_barrier(subject, view)).await;
        let outcome = match &verification {
            Ok(_) => "found",
            Err(status) if status.code() == tonic::Code::NotFound => "not_found",
            Err(_) => "error",
        };
        crate::metrics::record_verification(crate::metrics::Channel::Grpc, outcome);
        let verification = verification?;
        let agencies = verification.certifications.iter().map(|verified| verified.certification.agency_id.as_str());
        self.kyso.count_verification(crate::statistics::VerificationChannel::Grpc, agencies);
        Ok(convert::verification_to_proto(&verification, request.correlation_id, view))
    }

    /// A received PDF's signatures (after the read barrier, like every verify).
    async fn verify_received_pdf(&self, pdf: Bytes, correlation_id: String, view: VerifyView) -> Result<pb::VerifyResponse, Status> {
        let received = self.bounded(self.kyso.verify_received_pdf(pdf, view)).await;
        let outcome = match &received {
            Ok(received) if received.certifications.is_some() => "found",
            Ok(_) => "not_found",
            Err(status) if status.code() == tonic::Code::NotFound => "not_found",
            Err(_) => "error",
        };
        crate::metrics::record_verification(crate::metrics::Channel::Grpc, outcome);
        let received = received?;
        if let Some(verification) = &received.certifications {
            let agencies = verification.certifications.iter().map(|verified| verified.certification.agency_id.as_str());
            self.kyso.count_verification(crate::statistics::VerificationChannel::Grpc, agencies);
        }
        Ok(convert::received_pdf_to_proto(&received, correlation_id, view))
    }
}

#[tonic::async_trait]
impl<P: Proposer> pb::verification_service_server::VerificationService for GrpcApi<P> {
    #[tracing::instrument(skip_all)]
    async fn list_register(&self, request: Request<pb::ListRegisterRequest>) -> Result<Response<pb::ListRegisterResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let page_size = request.page_size as usize;
        let page = self.bounded(self.kyso.register_page(&caller, &request.agency_id, request.year, request.after_number, page_size)).await?;
        let full = page.len() >= if page_size == 0 { crate::service::certified_pdf::REGISTER_PAGE_ENTRIES_MAX } else { page_size };
        let next_after_number = if full { page.last().map_or(0, |(number, _, _)| *number) } else { 0 };
        let entries = page
            .iter()
            .map(|(number, label, certification)| pb::RegisterEntry {
                number: *number,
                label: label.clone(),
                certification: Some(convert::certification_to_proto(certification)),
            })
            .collect();
        Ok(Response::new(pb::ListRegisterResponse { entries, next_after_number }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        self.verify_one(request.into_inner()).await.map(Response::new)
    }

    type VerifyStreamStream = ResponseStream<pb::VerifyResponse>;

    /// Bulk verification. Requests are read as fast as they arrive, whatever the pace of
    /// the answers: HTTP/2 (the h2 library) closes a connection whose peer keeps many small
    /// DATA frames unread (GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames"), which killed
    /// every call on the channel of a client that sent thousands of requests without
    /// waiting. Read requests wait in a queue bounded by `verify_stream_requests_max` and
    /// by [`VERIFY_STREAM_QUEUED_BYTES_MAX`] (only requests carrying files can reach that:
    /// their large frames cost h2 nothing to hold). Requests that arrived before a batch
    /// starts share one read barrier (at most [`VERIFY_STREAM_BATCH_MAX`] a batch); answers
    /// keep the requests' order and wait for the client (at most
    /// [`STREAM_BUFFER_MESSAGES_MAX`] buffered).
    #[tracing::instrument(skip_all)]
    async fn verify_stream(
        &self,
        request: Request<Streaming<pb::VerifyRequest>>,
    ) -> Result<Response<Self::VerifyStreamStream>, Status> {
        let inbound = request.into_inner();
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER_MESSAGES_MAX);
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        let bytes = Arc::new(Semaphore::new(VERIFY_STREAM_QUEUED_BYTES_MAX));
        tokio::spawn(self.clone().read_verify_requests(inbound, queue, bytes));
        tokio::spawn(self.clone().answer_verify_requests(queued, sender));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}

/// A request read from a VerifyStream, with the queue bytes it holds; or the end of the
/// stream's requests with an error to answer last.
enum Queued {
    Request(pb::VerifyRequest, tokio::sync::OwnedSemaphorePermit),
    Failed(Status),
}

/// Bytes of VerifyStream requests read but not yet answered, per stream.
pub const VERIFY_STREAM_QUEUED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Requests that share one read barrier.
pub const VERIFY_STREAM_BATCH_MAX: usize = 256;

impl<P: Proposer> GrpcApi<P> {
    /// Reads a VerifyStream's requests into `queue` as they arrive (see `verify_stream`).
    async fn read_verify_requests(
        self,
        mut inbound: Streaming<pb::VerifyRequest>,
        queue: tokio::sync::mpsc::UnboundedSender<Queued>,
        bytes: Arc<Semaphore>,
    ) {
        let limit = self.kyso.limits().verify_stream_requests_max;
        for count in 0..=limit {
            let request = match self.next_message(&mut inbound).await {
                Ok(Some(request)) if count < limit => request,
                Ok(Some(_)) => {
                    let status = Status::resource_exhausted(format!(
                        "a VerifyStream call checks at most {limit} documents; open a new stream for the rest"
                    ));
                    let _ = queue.send(Queued::Failed(status));
                    return;
                }
                Ok(None) => return,
                Err(status) => {
                    let _ = queue.send(Queued::Failed(status));
                    return;
                }
            };
            let size = u32::try_from(prost::Message::encoded_len(&request).clamp(1, VERIFY_STREAM_QUEUED_BYTES_MAX)).unwrap_or(u32::MAX);
            let Ok(permit) = bytes.clone().acquire_many_owned(size).await else { return };
            if queue.send(Queued::Request(request, permit)).is_err() {
                return;
            }
        }
    }

    /// Answers queued VerifyStream requests in order, a batch per read barrier.
    async fn answer_verify_requests(
        self,
        mut queued: tokio::sync::mpsc::UnboundedReceiver<Queued>,
        sender: tokio::sync::mpsc::Sender<Result<pb::VerifyResponse, Status>>,
    ) {
        let mut batch = Vec::with_capacity(VERIFY_STREAM_BATCH_MAX);
        while queued.recv_many(&mut batch, VERIFY_STREAM_BATCH_MAX).await > 0 {
            let barrier = self.bounded(self.kyso.verify_barrier()).await;
            for item in batch.drain(..) {
                let answer = match item {
                    Queued::Failed(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                    Queued::Request(request, _permit) => {
                        let correlation_id = request.correlation_id.clone();
                        let verified = match &barrier {
                            Ok(()) => self.verify_one_after_barrier(request).await,
                            Err(status) => Err(status.clone()),
                        };
                        verified.unwrap_or_else(|status| pb::VerifyResponse {
                            correlation_id,
                            error_code: status.code() as i32,
                            error_message: status.message().to_string(),
                            ..Default::default()
                        })
                    }
                };
                if sender.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl<P: Proposer> pb::log_service_server::LogService for GrpcApi<P> {
    async fn get_checkpoint(&self, _request: Request<pb::GetCheckpointRequest>) -> Result<Response<pb::Checkpoint>, Status> {
        let checkpoint = self.bounded(self.kyso.checkpoint()).await?;
        Ok(Response::new(convert::checkpoint_to_proto(&checkpoint)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        use pb::get_inclusion_proof_request::Leaf;
        let request = request.into_inner();
        let (proof, checkpoint) = match request.leaf {
            Some(Leaf::LeafIndex(index)) => self.bounded(self.kyso.inclusion_by_index(index, request.tree_size)).await?,
            Some(Leaf::LookupCode(code)) => self.bounded(self.kyso.inclusion_by_code(&code, request.tree_size)).await?,
            None => return Err(Status::invalid_argument("name the leaf by leaf_index or lookup_code")),
        };
        Ok(Response::new(convert::inclusion_to_proto(&proof, &checkpoint)))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let request = request.into_inner();
        let (proof, checkpoint) = self.bounded(self.kyso.consistency(request.first_size, request.second_size)).await?;
        Ok(Response::new(pb::ConsistencyProof {
            first_size: request.first_size,
            second_size: checkpoint.tree_size,
            proof: proof.iter().map(|hash| hash.to_vec()).collect(),
            checkpoint: Some(convert::checkpoint_to_proto(&checkpoint)),
        }))
    }

    async fn get_entries(&self, request: Request<pb::GetEntriesRequest>) -> Result<Response<pb::GetEntriesResponse>, Status> {
        let request = request.into_inner();
        let entries = self.bounded(self.kyso.log_entries(request.start, request.end)).await?;
        Ok(Response::new(pb::GetEntriesResponse {
            entries: entries.into_iter().map(|(leaf_index, leaf_data)| pb::LogEntry { leaf_index, leaf_data }).collect(),
        }))
    }

    async fn get_log_key(&self, _request: Request<pb::GetLogKeyRequest>) -> Result<Response<pb::LogKey>, Status> {
        let (verifier_key, origin) = self.kyso.log_key();
        Ok(Response::new(pb::LogKey { verifier_key, origin }))
    }

    async fn timestamp(&self, request: Request<pb::TimestampRequest>) -> Result<Response<pb::TimestampReply>, Status> {
        let reply = self.kyso.timestamp_reply(&request.into_inner().query)?;
        Ok(Response::new(pb::TimestampReply { reply }))
    }
}

#[tonic::async_trait]
impl<P: Proposer> pb::access_service_server::AccessService for GrpcApi<P> {
    #[tracing::instrument(skip_all)]
    async fn set_access(&self, request: Request<pb::SetAccessRequest>) -> Result<Response<pb::Principal>, Status> {
        let caller = caller_of(&request);
        trace_request_id(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let principal = convert::principal_from_proto(&request)?;
        let principal = self.bounded(self.kyso.set_access(&caller, &request.request_id, principal)).await?;
        Ok(Response::new(convert::principal_to_proto(&principal)))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::Principal>, Status> {
        let caller = caller_of(&request);
        Ok(Response::new(pb::Principal {
            certificate_sha256: caller.actor.certificate_sha256.map(|hash| hash.0.to_vec()).unwrap_or_default(),
            name: caller.actor.name.clone(),
            roles: caller.roles.iter().map(|role| role.as_str().to_string()).collect(),
            agency_ids: caller.agency_ids.clone(),
            signer_ids: caller.signer_ids.clone(),
        }))
    }
}

/// Records a write's request id on its call's span (opened by the auth layer).
fn trace_request_id<T>(request: &Request<T>, request_id: &str) {
    RequestSpan::of(request.extensions()).record_request_id(request_id);
}
