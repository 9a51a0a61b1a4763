//! `kyso signer sign-pdf`: a certified PDF signed with the signer's own PKCS#11 token (a
//! USB token, or SoftHSM2 in tests). The private key never leaves the token: kyso
//! prepares the PDF revision and the CMS signed attributes (PrepareTokenSignature), the
//! token signs the attributes, kyso verifies, time-stamps, seals and records
//! (CompleteTokenSignature), and the delivered PDF is written to a file.
//!
//! The token's PIN comes from `KYSO_TOKEN_PIN` or a prompt, never from an argument
//! (arguments show in process listings).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, download_blob, new_request_id, print_json, status_error, CertificationArgs, Connection};
use crate::domain::Sha256;

/// Debian's SoftHSM2 module; a USB token's vendor module goes in --module.
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[derive(Debug, Args)]
pub struct SignPdfArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// SHA-256 (hex) of the archived PDF, JPEG or PNG scan to certify.
    #[arg(long)]
    pub hash: String,
    #[command(flatten)]
    pub certification: CertificationArgs,
    /// The PKCS#11 module (shared library) of the token.
    #[arg(long, default_value = DEFAULT_PKCS11_MODULE, env = "KYSO_PKCS11_MODULE")]
    pub module: PathBuf,
    /// The token's label; without it, the only token present.
    #[arg(long, env = "KYSO_TOKEN_LABEL")]
    pub token_label: Option<String>,
    /// The private key's label (CKA_LABEL) on the token.
    #[arg(long, required_unless_present = "key_id")]
    pub key_label: Option<String>,
    /// The private key's id (CKA_ID), hex.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Where to write the certified PDF.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn sign_pdf(args: SignPdfArgs) -> anyhow::Result<()> {
    let document_sha256 = Sha256::from_hex(&args.hash).with_context(|| format!("--hash {:?} is not 64 hex digits", args.hash))?;
    let pin = token_pin()?;
    let token = Token::open(&args, &pin)?;
    let channel = channel(&args.connection).await?;
    let mut signing = pb::signing_service_client::SigningServiceClient::new(channel.clone());
    let target = &args.certification;
    let prepared = signing
        .prepare_token_signature(pb::PrepareTokenSignatureRequest {
            document_sha256: document_sha256.0.to_vec(),
            kind: target.kind.to_proto() as i32,
            agency_id: target.agency.clone(),
            signer_id: target.signer.clone(),
            dossier_id: target.dossier.clone(),
        })
        .await
        .map_err(status_error)
        .context("PrepareTokenSignature failed")?
        .into_inner();
    let signature_value = token.sign(&prepared.key_algorithm, &prepared.signed_attributes_der)?;
    let certification = signing
        .complete_token_signature(pb::CompleteTokenSignatureRequest {
            request_id: target.request_id.clone().unwrap_or_else(new_request_id),
            prepared_id: prepared.prepared_id.clone(),
            signature_value,
        })
        .await
        .map_err(status_error)
        .context("CompleteTokenSignature failed")?
        .into_inner();
    let pdf = download_blob(channel, &certification.delivered_pdf_sha256).await.context("cannot fetch the certified pdf")?;
    std::fs::write(&args.out, &pdf).with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.connection.json {
        print_json(json!({
            "lookup_code": certification.lookup_code,
            "delivered_pdf_sha256": hex::encode(&certification.delivered_pdf_sha256),
            "register_year": certification.register_year,
            "register_number": certification.register_number,
            "signed_at_unix": certification.signed_at_unix,
            "out": args.out.display().to_string(),
        }));
    } else {
        out!(
            "signed with the token; lookup code {}, register number {}/{}; certified pdf {} written to {}",
            certification.lookup_code,
            certification.register_number,
            certification.register_year,
            hex::encode(&certification.delivered_pdf_sha256),
            args.out.display()
        );
    }
    Ok(())
}

/// The token's user PIN: `KYSO_TOKEN_PIN`, or typed at a prompt without echo.
fn token_pin() -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Ok(pin) = std::env::var("KYSO_TOKEN_PIN") {
        return Ok(zeroize::Zeroizing::new(pin));
    }
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        bail!("set KYSO_TOKEN_PIN or run in a terminal to be asked for the token's pin");
    }
    Ok(zeroize::Zeroizing::new(rpassword::prompt_password("token pin: ").context("cannot read the pin")?))
}

/// A logged-in session on the token and the signer's private key on it.
struct Token {
    session: Session,
    key: ObjectHandle,
    // Kept alive as long as the session; finalized on drop.
    _context: Pkcs11,
}

impl Token {
    fn open(args: &SignPdfArgs, pin: &str) -> anyhow::Result<Token> {
        let context = Pkcs11::new(&args.module).with_context(|| format!("cannot load the PKCS#11 module {} (see --module)", args.module.display()))?;
        context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).context("the PKCS#11 module does not initialize")?;
        let slot = find_slot(&context, args.token_label.as_deref())?;
        let session = context.open_ro_session(slot).context("cannot open a session on the token")?;
        session
            .login(UserType::User, Some(&cryptoki::types::AuthPin::from(pin.to_string())))
            .context("the token refused the pin (a token locks after a few wrong pins)")?;
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &args.key_label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &args.key_id {
            template.push(Attribute::Id(hex::decode(id).with_context(|| format!("--key-id {id:?} is not hex"))?));
        }
        let keys = session.find_objects(&template).context("cannot search the token")?;
        let key = match keys.as_slice() {
            [key] => *key,
            [] => bail!("no private key with that label/id on the token (see --key-label, --key-id; `pkcs11-tool --list-objects` lists them)"),
            _ => bail!("{} private keys match; name one with --key-id", keys.len()),
        };
        Ok(Token { session, key, _context: context })
    }

    /// The signature value kyso expects for `key_algorithm` over `signed_attributes`.
    fn sign(&self, key_algorithm: &str, signed_attributes: &[u8]) -> anyhow::Result<Vec<u8>> {
        match key_algorithm {
            "ecdsa-p256" => {
                let digest = ring::digest::digest(&ring::digest::SHA256, signed_attributes);
                let raw = self.session.sign(&Mechanism::Ecdsa, self.key, digest.as_ref()).context("the token did not sign (CKM_ECDSA)")?;
                ecdsa_raw_to_der(&raw)
            }
            "rsa" => self.session.sign(&Mechanism::Sha256RsaPkcs, self.key, signed_attributes).context("the token did not sign (CKM_SHA256_RSA_PKCS)"),
            other => bail!("the signer's certificate is {other}; a token signs with ecdsa-p256 or rsa here"),
        }
    }
}

fn find_slot(context: &Pkcs11, label: Option<&str>) -> anyhow::Result<cryptoki::slot::Slot> {
    let slots = context.get_slots_with_token().context("cannot list the module's tokens")?;
    let mut labelled = Vec::new();
    for slot in slots {
        let info = context.get_token_info(slot).context("cannot read a token's information")?;
        labelled.push((slot, info.label().trim_end().to_string()));
    }
    match label {
        Some(wanted) => labelled
            .iter()
            .find(|(_, label)| label == wanted)
            .map(|(slot, _)| *slot)
            .with_context(|| format!("no token labelled {wanted:?}; present: {:?}", labelled.iter().map(|(_, label)| label).collect::<Vec<_>>())),
        None => match labelled.as_slice() {
            [(slot, _)] => Ok(*slot),
            [] => bail!("no token is present in {}; plug it in", "the module's slots"),
            _ => bail!("{} tokens are present; name one with --token-label", labelled.len()),
        },
    }
}

/// PKCS#11 returns an ECDSA signature as r || s (each the curve's size); CMS carries the
/// DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }.
fn ecdsa_raw_to_der(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 || raw.len() > 132 {
        bail!("the token returned a {}-byte ECDSA signature; expected r || s", raw.len());
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 8);
    for half in [r, s] {
        let trimmed = &half[half.iter().position(|byte| *byte != 0).unwrap_or(half.len() - 1)..];
        let pad = trimmed[0] & 0x80 != 0;
        body.push(0x02);
        body.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            body.push(0);
        }
        body.extend_from_slice(trimmed);
    }
    // At most 2 × (2 + 67) bytes: a one-byte length suffices below 128, else 0x81.
    let mut der = vec![0x30];
    if body.len() >= 0x80 {
        der.push(0x81);
    }
    der.push(body.len() as u8);
    der.extend_from_slice(&body);
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING};

    #[test]
    fn a_raw_ecdsa_signature_becomes_der_that_verifies() {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
        // Enough signatures that some r or s has its high bit set and some a leading zero.
        for index in 0..64u32 {
            let message = index.to_be_bytes();
            let raw = key.sign(&random, &message).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            public.verify(&message, &der).unwrap_or_else(|_| panic!("signature {index} does not verify after conversion: {}", hex::encode(&der)));
        }
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
    }

    #[test]
    fn the_high_bit_gets_a_zero_byte_and_leading_zeros_go() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 0x01;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
    }
}
