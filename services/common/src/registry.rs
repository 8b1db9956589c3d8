//! The schema registry (Confluent REST API; locally Apicurio's `/apis/ccompat/v7`) and Avro in
//! Confluent framing (magic byte 0, 4-byte big-endian schema id, Avro binary).
//!
//! [`AvroCodec`] encodes and decodes with `schema_registry_converter`, which caches schemas by id
//! (decode) and by subject (encode), so the registry is called once per schema, not per record.
//! [`RegistryAdmin`] is the small admin client used by `tci schemas register` and the tests.
//! Subjects follow the TopicNameStrategy: `<topic>-value`.

use std::time::Duration;

use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    error::SRCError,
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use serde::{de::DeserializeOwned, Serialize};

use crate::config::RegistryConfig;

/// Why a record could not be decoded. [`DecodeError::is_retriable`] separates "the registry is
/// unreachable, try again" from "this record is poison, dead-letter it".
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record has no value (tombstone)")]
    Empty,
    #[error("not Confluent Avro framing: {0}")]
    Framing(String),
    #[error("schema id {id} cannot be used: {reason}")]
    Schema { id: u32, reason: String, retriable: bool },
    #[error("value does not match its writer schema {id}: {reason}")]
    Avro { id: u32, reason: String },
    #[error("value of schema {id} lacks what this service needs: {reason}")]
    Shape { id: u32, reason: String },
}

impl DecodeError {
    /// True when retrying later may succeed (registry down); false for poison records.
    pub fn is_retriable(&self) -> bool {
        matches!(self, DecodeError::Schema { retriable: true, .. })
    }

    /// A stable short name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Framing(_) => "framing",
            DecodeError::Schema { retriable: true, .. } => "registry_unavailable",
            DecodeError::Schema { .. } => "unknown_schema",
            DecodeError::Avro { .. } => "avro",
            DecodeError::Shape { .. } => "shape",
        }
    }
}

/// Why a record could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("avro encode for subject {subject}: {reason}")]
pub struct EncodeError {
    pub subject: String,
    pub reason: String,
    pub retriable: bool,
}

fn settings(cfg: &RegistryConfig) -> Result<SrSettings, SRCError> {
    SrSettings::new_builder(cfg.url.clone()).set_timeout(cfg.timeout).no_proxy().build()
}

/// Avro encode/decode through the registry. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct AvroCodec {
    encoder: std::sync::Arc<AvroEncoder>,
    decoder: std::sync::Arc<AvroDecoder>,
}

impl AvroCodec {
    pub fn new(cfg: &RegistryConfig) -> anyhow::Result<Self> {
        let s = settings(cfg).map_err(|e| anyhow::anyhow!("schema registry settings: {e}"))?;
        Ok(Self {
            encoder: std::sync::Arc::new(AvroEncoder::new(s.clone())),
            decoder: std::sync::Arc::new(AvroDecoder::new(s)),
        })
    }

    /// Registers (or finds) `avsc` as the value schema of `topic` and caches its id. Call once at
    /// start-up; afterwards [`Self::encode`] never sends the schema text again.
    pub async fn register_value_schema(&self, topic: &str, avsc: &str) -> Result<u32, EncodeError> {
        let subject = format!("{topic}-value");
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_string(),
            false,
            SuppliedSchema::new(None, SchemaType::Avro, avsc.to_string()),
        );
        match self.encoder.get_schema_and_id(&subject, strategy).await {
            Ok(s) => Ok(s.id),
            Err(e) => {
                self.encoder.remove_errors_from_cache();
                Err(EncodeError { subject, reason: e.to_string(), retriable: e.retriable })
            }
        }
    }

    /// Encodes `item` with the value schema of `topic` (registered beforehand with
    /// [`Self::register_value_schema`], or the latest version in the registry).
    pub async fn encode<T: Serialize>(&self, topic: &str, item: &T) -> Result<Vec<u8>, EncodeError> {
        let strategy = SubjectNameStrategy::TopicNameStrategy(topic.to_string(), false);
        self.encoder.encode_struct(item, &strategy).await.map_err(|e| {
            if e.retriable {
                self.encoder.remove_errors_from_cache();
            }
            EncodeError { subject: format!("{topic}-value"), reason: e.to_string(), retriable: e.retriable }
        })
    }

    /// Decodes a Confluent-framed Avro value into `T`.
    pub async fn decode<T: DeserializeOwned>(&self, bytes: Option<&[u8]>) -> Result<T, DecodeError> {
        let bytes = bytes.ok_or(DecodeError::Empty)?;
        let id = framing_id(bytes)?;
        let res = self.decoder.decode(Some(bytes)).await.map_err(|e| {
            if e.retriable {
                self.decoder.remove_errors_from_cache();
                DecodeError::Schema { id, reason: e.to_string(), retriable: true }
            } else if e.error.contains("schema") || e.error.contains("registry") || e.error.contains("http") {
                DecodeError::Schema { id, reason: e.to_string(), retriable: false }
            } else {
                DecodeError::Avro { id, reason: e.to_string() }
            }
        })?;
        apache_avro::from_value::<T>(&res.value).map_err(|e| DecodeError::Shape { id, reason: e.to_string() })
    }
}

/// Reads the schema id of a Confluent-framed record, or explains why the framing is wrong.
pub fn framing_id(bytes: &[u8]) -> Result<u32, DecodeError> {
    if bytes.len() < 5 {
        return Err(DecodeError::Framing(format!("{} bytes, need at least 5", bytes.len())));
    }
    if bytes[0] != 0 {
        return Err(DecodeError::Framing(format!("magic byte is {:#04x}, expected 0x00", bytes[0])));
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// Admin calls on the registry's Confluent REST API.
#[derive(Clone)]
pub struct RegistryAdmin {
    http: reqwest::Client,
    base: String,
}

/// A registry answer that was not a success.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("schema registry refused {what}: HTTP {status}: {body}")]
    Refused { what: String, status: u16, body: String },
}

const CT: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryAdmin {
    pub fn new(cfg: &RegistryConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(cfg.timeout).connect_timeout(Duration::from_secs(3)).build()?;
        Ok(Self { http, base: cfg.url.trim_end_matches('/').to_string() })
    }

    async fn call(&self, what: &str, req: reqwest::RequestBuilder) -> Result<serde_json::Value, RegistryError> {
        let resp = req
            .header("accept", CT)
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable { url: self.base.clone(), source: e })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(RegistryError::Refused { what: what.to_string(), status: status.as_u16(), body });
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    /// `GET /subjects`.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let v = self.call("listing subjects", self.http.get(format!("{}/subjects", self.base))).await?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    /// `PUT /config {"compatibility": level}`: the global compatibility rule.
    pub async fn set_global_compatibility(&self, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level });
        self.call(
            "setting the global compatibility",
            self.http.put(format!("{}/config", self.base)).header("content-type", CT).json(&body),
        )
        .await
        .map(|_| ())
    }

    /// `PUT /config/<subject>`.
    pub async fn set_subject_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level });
        self.call(
            &format!("setting compatibility of {subject}"),
            self.http.put(format!("{}/config/{subject}", self.base)).header("content-type", CT).json(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /subjects/<subject>/versions`: registers an Avro schema, returns its id. An
    /// incompatible schema is refused with [`RegistryError::Refused`] (HTTP 409).
    pub async fn register(&self, subject: &str, avsc: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": avsc, "schemaType": "AVRO" });
        let v = self
            .call(
                &format!("registering a schema under {subject}"),
                self.http
                    .post(format!("{}/subjects/{subject}/versions", self.base))
                    .header("content-type", CT)
                    .json(&body),
            )
            .await?;
        Ok(v.get("id").and_then(|i| i.as_u64()).unwrap_or(0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked_before_any_registry_call() {
        assert!(matches!(framing_id(&[0, 0, 0]), Err(DecodeError::Framing(_))));
        assert!(matches!(framing_id(&[1, 0, 0, 0, 7, 2]), Err(DecodeError::Framing(m)) if m.contains("0x01")));
        assert_eq!(framing_id(&[0, 0, 0, 1, 2, 9]).expect("valid"), 258);
    }

    #[test]
    fn only_registry_outages_are_retriable() {
        let outage = DecodeError::Schema { id: 1, reason: "down".into(), retriable: true };
        let unknown = DecodeError::Schema { id: 1, reason: "404".into(), retriable: false };
        assert!(outage.is_retriable());
        assert!(!unknown.is_retriable());
        assert!(!DecodeError::Framing("x".into()).is_retriable());
        assert_eq!(unknown.kind(), "unknown_schema");
    }
}
